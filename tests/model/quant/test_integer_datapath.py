"""No floats in the integer datapath: the integer algorithms, the fixed-point primitives they use and the
integer reference's arithmetic hold no float literal, no float type, no math function and no true division."""

import ast
import inspect

import pytest

from m3vit.quant import fixed, intops, reference

FIXED_INTEGER_FUNCTIONS = ["saturate", "round_shift", "requantize_shift", "requantize", "checked_mul",
                           "checked_matmul", "isqrt", "div_round", "_bounds", "max_abs"]


def float_uses(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, float | complex):
            found.append(f"float literal {node.value!r} (line {node.lineno})")
        elif isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.Div):
            found.append(f"true division (line {node.lineno})")
        elif isinstance(node, ast.Attribute) and (node.attr.startswith(("float", "longdouble", "half", "single",
                                                                          "double"))
                                                  or (isinstance(node.value, ast.Name) and node.value.id == "math")):
            found.append(f"{ast.unparse(node)} (line {node.lineno})")
        elif isinstance(node, ast.Name) and node.id in ("float", "math", "erf", "erfc", "mpmath"):
            found.append(f"{node.id} (line {node.lineno})")
    return found


def functions_of(module) -> dict[str, ast.AST]:
    tree = ast.parse(inspect.getsource(module))
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_intops_module_is_float_free():
    tree = ast.parse(inspect.getsource(intops))
    assert float_uses(tree) == []


@pytest.mark.parametrize("name", FIXED_INTEGER_FUNCTIONS)
def test_fixed_point_primitives_are_float_free(name):
    assert float_uses(functions_of(fixed)[name]) == []


def test_integer_reference_arithmetic_is_float_free():
    tree = ast.parse(inspect.getsource(reference.IntArith))
    assert float_uses(tree) == []


def test_the_checker_sees_floats():
    assert len(float_uses(ast.parse("def f(x):\n    return math.sqrt(x) / 2.0 + np.float64(x)"))) == 5
