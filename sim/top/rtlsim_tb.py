"""cocotb side of ``rtlsim.simulate``: the host runtime's driver loads the pack and program the parameters name,
selects the task and runs the frames on ``m3vit_top`` with cocotbext-axi DDR; the tokens go to an ``.npy`` file."""

from __future__ import annotations

from pathlib import Path

import cocotb
import numpy as np
from top_tb import TopTB, run_driver


@cocotb.test(timeout_time=3600, timeout_unit="sec")
async def rtlsim_run(dut):
    tb = TopTB(dut, pauses=False)
    await tb.start()
    p = tb.params
    driver = tb.driver(frames=p["device_frames"])
    payload = Path(p["payload"]).read_bytes()
    program = np.load(p["program"]).astype("<u4").tobytes()
    await run_driver(driver.load, payload, program)
    await run_driver(driver.set_task, p["task"])
    tokens = await run_driver(driver.run, np.load(p["images"]))
    assert tb.status() == {"program_error": 0, "axi_error": 0}, f"the top refused the run: {tb.status()}"
    np.save(p["tokens"], np.asarray(tokens))
