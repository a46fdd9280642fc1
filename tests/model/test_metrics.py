import math

import torch

from m3vit.configs import IGNORE_INDEX
from m3vit.metrics import BinaryMeter, DepthMeter, NormalsMeter, SegmentationMeter


def test_miou_by_hand():
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, IGNORE_INDEX, 1]]])
    pred = torch.tensor([[[0, 1, 1, 1], [2, 0, 0, 1]]])
    m = SegmentationMeter(4)
    m.update(pred, target)
    # class 0: inter 1, union 3; class 1: inter 3, union 4; class 2: inter 1, union 2; class 3 absent
    r = m.result()
    assert math.isclose(r["mIoU"], (1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert math.isclose(r["pixel_acc"], 5 / 7) and r["classes_present"] == 3


def test_depth_ignores_invalid():
    m = DepthMeter()
    m.update(torch.tensor([[1.0, 5.0, 9.0]]), torch.tensor([[2.0, 0.0, 6.0]]))
    r = m.result()
    assert math.isclose(r["rmse"], math.sqrt((1 + 9) / 2)) and math.isclose(r["abs_rel"], (0.5 + 0.5) / 2)


def test_normals_angle():
    target = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).repeat(1, 1, 1, 2)
    target[..., 1] = 0  # second pixel invalid
    pred = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).repeat(1, 1, 1, 2)
    m = NormalsMeter()
    m.update(pred, target)
    assert math.isclose(m.result()["mean_angle_deg"], 90.0, abs_tol=1e-6)


def test_binary_f():
    m = BinaryMeter()
    m.update(torch.tensor([2.0, 2.0, -1.0, -1.0]), torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert math.isclose(m.result()["F"], 0.5)
