"""Rule checker of the HLS sources: what Vitis HLS needs to synthesize them as hls/README.md intends.

Parses the top (default ``hls/src/m3vit_accel.cpp`` with a generated ``m3vit_config.h``) with libclang — the
synthesis build: ``M3V_AP_TYPES`` defined, ``M3V_DUMPS`` not — and checks every function reachable from the top
function by calls (the synthesized code; the C-sim ABI and testbench are never reached) against the rules below
(hls/README.md, "HLS rules"). Each finding is one line ``RULE file:line function: detail``.

Rules:
  stream-pointer      a struct field that points to an hls::stream / hls::stream_of_blocks (pass references)
  recursion           a cycle in the call graph of the project's functions (constexpr ones included)
  int64               a 64-bit integer (int64_t, uint64_t, long long, long) declared, cast or returned in a
                      synthesized function: the contract's widths are ap_int / ap_uint of NUMERICS.md's sizes
  dataflow-shared     in a DATAFLOW region, an array / pointer / reference passed to two processes, or a channel
                      (hls::stream, stream_of_blocks) with two writers or more than one writer and one reader
  dataflow-global     a non-const namespace-scope (file-scope) variable, or a function-scope static one, referenced
                      in a DATAFLOW region or in a function reachable from one of its processes: state outside the
                      region's arguments, which Vitis cannot give one producer and one consumer (the top declares
                      it and passes it down as an array argument); const / constexpr tables (ROMs) are fine
  tripcount           a loop whose bound is not a compile-time constant and whose body has no LOOP_TRIPCOUNT
  storage             an array of more than --storage-bits bits with no ARRAY_PARTITION / ARRAY_RESHAPE /
                      BIND_STORAGE decision

``--baseline FILE`` (JSON: {"RULE function": count}) accepts up to `count` findings of a rule in a function —
the ratchet for rules whose fixes are still open (hls/README.md lists them); a finding beyond it fails, and a
baseline entry that no longer has findings is reported so it is removed.

Exit status: 0 clean, 1 findings, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RULES = ("stream-pointer", "recursion", "int64", "dataflow-shared", "dataflow-global", "tripcount", "storage")
DEFAULT_STORAGE_BITS = 16384  # a BRAM18's worth: beyond it the storage is a decision, not a default
STREAM_TYPES = re.compile(r"\bhls::(stream|stream_of_blocks)<")
DECISION = re.compile(r"#pragma\s+HLS\s+(ARRAY_PARTITION|ARRAY_RESHAPE|BIND_STORAGE)\b[^\n]*\bvariable\s*=\s*(\w+)")
DECISION_MACRO = re.compile(r"\b\w+_PRAGMAS\(\s*(\w+)\s*\)")  # e.g. M3V_BLOCK_STREAM_PRAGMAS(var)


class BadInput(Exception):
    pass


@dataclass(frozen=True)
class Finding:
    rule: str
    file: str
    line: int
    function: str
    detail: str

    def key(self) -> str:
        return f"{self.rule} {self.function}"

    def __str__(self) -> str:
        return f"{self.rule} {self.file}:{self.line} {self.function}: {self.detail}"


def _cindex():
    try:
        import clang.cindex as ci
    except ImportError as exc:  # pragma: no cover - the project pins libclang in requirements.txt
        raise BadInput("libclang is not installed: pip install libclang==18.1.1 (requirements.txt)") from exc
    return ci


def default_args(header_dir: Path) -> list[str]:
    from m3vit.hw.run.csim import ap_types_dir

    gcc_inc = subprocess.run(["gcc", "-print-file-name=include"], capture_output=True, text=True,
                             check=True).stdout.strip()
    return ["-x", "c++", "-std=c++14", "-isystem", gcc_inc, "-I", str(ap_types_dir()), "-I", str(header_dir),
            "-I", str(REPO / "hls" / "include"), "-DM3V_AP_TYPES"]


class Checker:
    def __init__(self, source: Path, args: list[str], top: str, project: Path, storage_bits: int) -> None:
        self.ci = _cindex()
        self.project = project.resolve()
        self.storage_bits = storage_bits
        tu = self.ci.Index.create().parse(str(source), args=args)
        errors = [d for d in tu.diagnostics if d.severity >= self.ci.Diagnostic.Error]
        if errors:
            raise BadInput(f"{source}: does not parse: {errors[0]}")
        self.tu = tu
        self.texts: dict[str, str] = {}
        self.defs: dict[tuple, object] = {}  # (file, line, col) of a function's name → its definition
        fk = self.ci.CursorKind
        self.func_kinds = (fk.FUNCTION_DECL, fk.CXX_METHOD, fk.FUNCTION_TEMPLATE, fk.CONSTRUCTOR)
        for c in tu.cursor.walk_preorder():
            if c.kind in self.func_kinds and c.is_definition() and self._ours(c):
                self.defs[self._loc(c)] = c
        self.by_name: dict[str, list] = {}
        for c in self.defs.values():
            self.by_name.setdefault(c.spelling, []).append(c)
        tops = [c for c in self.defs.values() if c.spelling == top]
        if not tops:
            raise BadInput(f"{source}: no definition of the top function {top!r}")
        self.top = tops[0]
        self.calls = {k: self._callees(c) for k, c in self.defs.items()}
        self.reached = self._reach(self._loc(self.top))

    # --- helpers ---------------------------------------------------------------------------------------------------
    def _ours(self, c) -> bool:
        f = c.location.file
        return f is not None and Path(f.name).resolve().is_relative_to(self.project)

    @staticmethod
    def _loc(c) -> tuple:
        return (c.location.file.name if c.location.file else "", c.location.line, c.location.column)

    def _text(self, c) -> str:
        name = c.extent.start.file.name
        if name not in self.texts:
            self.texts[name] = Path(name).read_bytes().decode()
        return self.texts[name].encode()[c.extent.start.offset:c.extent.end.offset].decode()

    def _rel(self, c) -> tuple[str, int]:
        f = c.location.file.name if c.location.file else "?"
        if Path(f).resolve().is_relative_to(REPO):
            f = str(Path(f).resolve().relative_to(REPO))
        return f, c.location.line

    def _finding(self, rule: str, c, function: str, detail: str) -> Finding:
        f, line = self._rel(c)
        return Finding(rule, f, line, function, detail)

    def _targets(self, call) -> list:
        """The definitions a call may reach. Inside a template a call with dependent arguments is unresolved
        (an overloaded name, or a functor parameter): it reaches every project definition of that name (a
        functor: every operator()), which over-approximates what is synthesized."""
        ck = self.ci.CursorKind
        ref = call.referenced
        if ref is not None and ref.location.file is not None:
            d = self.defs.get(self._loc(ref))
            if d is not None:
                return [d]
            if ref.kind in (ck.PARM_DECL, ck.VAR_DECL, ck.FIELD_DECL):  # a functor object
                return self.by_name.get("operator()", [])
        kids = list(call.get_children())
        if ref is None and kids:
            head = kids[0]
            while head.kind == ck.UNEXPOSED_EXPR and list(head.get_children()):
                head = next(head.get_children())
            if head.kind in (ck.OVERLOADED_DECL_REF, ck.DECL_REF_EXPR, ck.MEMBER_REF_EXPR) and head.spelling:
                toks = [t.spelling for t in call.get_tokens()][:2]
                if toks != [head.spelling, "("]:
                    return []  # an operator on a dependent type (x > y, x + y): library code, not a call of ours
                if head.referenced is not None and head.referenced.kind in (ck.PARM_DECL, ck.VAR_DECL):
                    return self.by_name.get("operator()", [])
                return self.by_name.get(head.spelling, [])
            if head.kind == ck.DECL_REF_EXPR and not head.spelling:  # a dependent call: its name is its first token
                name = next(call.get_tokens()).spelling
                return self.by_name.get(name, [])
        return []

    def _args(self, call) -> list:
        """A call's arguments (a dependent call inside a template lists its callee first, unnamed)."""
        kids = list(call.get_children())
        if call.referenced is None and kids and kids[0].kind == self.ci.CursorKind.DECL_REF_EXPR and \
                not kids[0].spelling:
            return kids[1:]
        return list(call.get_arguments())

    def _target(self, call):
        ts = self._targets(call)
        return ts[0] if ts else None

    def _callees(self, fn) -> list[tuple]:
        out = []
        for c in fn.walk_preorder():
            if c.kind == self.ci.CursorKind.CALL_EXPR:
                out += [self._loc(t) for t in self._targets(c)]
        return out

    def _reach(self, start: tuple) -> set:
        seen, todo = set(), [start]
        while todo:
            k = todo.pop()
            if k in seen:
                continue
            seen.add(k)
            todo += self.calls.get(k, [])
        return seen

    def _name(self, fn) -> str:
        parent = fn.semantic_parent
        if parent is not None and parent.kind in (self.ci.CursorKind.STRUCT_DECL, self.ci.CursorKind.CLASS_DECL):
            return f"{parent.spelling}::{fn.spelling}"
        return fn.spelling

    def synthesized(self) -> list:
        return [self.defs[k] for k in sorted(self.reached, key=lambda k: (k[0], k[1]))]

    # --- rules -----------------------------------------------------------------------------------------------------
    def stream_pointers(self) -> list[Finding]:
        out = []
        for c in self.tu.cursor.walk_preorder():
            if c.kind == self.ci.CursorKind.FIELD_DECL and self._ours(c):
                t = c.type.get_canonical()
                if t.kind == self.ci.TypeKind.POINTER and STREAM_TYPES.search(t.get_pointee().spelling):
                    out.append(self._finding("stream-pointer", c, c.semantic_parent.spelling,
                                             f"field {c.spelling} points to {t.get_pointee().spelling}"))
        return out

    def recursion(self) -> list[Finding]:
        out, state = [], {}

        def visit(k: tuple, stack: list) -> None:
            state[k] = 1
            for n in self.calls.get(k, []):
                if state.get(n) == 1:
                    fn = self.defs[n]
                    cycle = [self.defs[s].spelling for s in stack[stack.index(n):]] + [fn.spelling]
                    out.append(self._finding("recursion", fn, fn.spelling, " -> ".join(cycle)))
                elif n not in state:
                    visit(n, [*stack, n])
            state[k] = 2

        for k in sorted(self.defs, key=lambda k: (k[0], k[1])):
            if k not in state:
                visit(k, [k])
        return out

    def _is64(self, t) -> bool:
        tk = self.ci.TypeKind
        t = t.get_canonical()
        while t.kind in (tk.CONSTANTARRAY, tk.INCOMPLETEARRAY, tk.LVALUEREFERENCE):
            t = t.element_type if t.kind != tk.LVALUEREFERENCE else t.get_pointee()
            t = t.get_canonical()
        if t.kind == tk.POINTER:
            # a pointer is an address (an m_axi port, an on-chip array argument), not a datapath value: the
            # pointee's arithmetic is checked where it is declared or cast — as `int64_t *` always was (the
            # ap_int spelling below would otherwise match "ap_uint<128> *" by its prefix)
            return False
        if t.kind in (tk.LONG, tk.ULONG, tk.LONGLONG, tk.ULONGLONG):
            return True
        m = re.match(r"(?:(?:const|volatile)\s+)*ap_u?int<(\d+)>", t.spelling)  # a const value is one too
        return bool(m) and int(m.group(1)) >= 64

    def int64(self) -> list[Finding]:
        ck = self.ci.CursorKind
        kinds = (ck.VAR_DECL, ck.PARM_DECL, ck.CSTYLE_CAST_EXPR, ck.CXX_FUNCTIONAL_CAST_EXPR, ck.CXX_STATIC_CAST_EXPR,
                 ck.FIELD_DECL)
        out, seen = [], set()
        for fn in self.synthesized():
            name = self._name(fn)
            if fn.kind != ck.FUNCTION_TEMPLATE and self._is64(fn.result_type):
                out.append(self._finding("int64", fn, name, f"returns {fn.result_type.spelling}"))
            for c in fn.walk_preorder():
                if c.kind in kinds and self._is64(c.type):
                    key = (self._rel(c), c.spelling, c.kind)
                    if key not in seen:
                        seen.add(key)
                        what = c.spelling or c.type.spelling
                        out.append(self._finding("int64", c, name, f"{c.kind.name.lower()} {what}: {c.type.spelling}"))
        return out

    def _regions(self, fn):
        """(region cursor, its process calls) of every DATAFLOW pragma in fn: the function body or a loop body."""
        ck = self.ci.CursorKind
        body = next((c for c in fn.get_children() if c.kind == ck.COMPOUND_STMT), None)
        if body is None:
            return []
        cands = [body] + [s for c in body.walk_preorder() if c.kind in (ck.FOR_STMT, ck.WHILE_STMT)
                          for s in c.get_children() if s.kind == ck.COMPOUND_STMT]
        out = []
        for comp in cands:
            stmts = list(comp.get_children())
            own = self._text(comp)
            for s in stmts:  # the pragma must be this compound's own, not a nested one's
                if s.kind == ck.COMPOUND_STMT or s.kind in (ck.FOR_STMT, ck.WHILE_STMT):
                    own = own.replace(self._text(s), "")
            if re.search(r"#pragma\s+HLS\s+DATAFLOW\b", own):
                procs = []
                for s in stmts:
                    call = s
                    while call.kind == ck.UNEXPOSED_EXPR or (call.kind == ck.CALL_EXPR and not call.spelling):
                        kids = list(call.get_children())
                        if not kids:
                            break
                        call = kids[0]
                    if s.kind == ck.CALL_EXPR:
                        call = s
                    if call.kind == ck.CALL_EXPR and self._target(call) is not None:
                        procs.append(call)
                out.append((comp, procs))
        return out

    def _writes(self, fn, index: int, depth: int = 0) -> bool:
        """Whether fn writes its parameter `index`: a stream's write() / write_nb() / write_lock, an assignment to
        (an element of) it, or a callee that does."""
        ck = self.ci.CursorKind
        params = [c for c in fn.get_children() if c.kind == ck.PARM_DECL]
        if index >= len(params) or depth > 8:
            return False
        p = params[index]
        def uses_p(node) -> bool:
            return any(d.kind == ck.DECL_REF_EXPR and d.referenced is not None and d.referenced == p
                       for d in node.walk_preorder())

        for c in fn.walk_preorder():
            stream_write = c.kind == ck.CALL_EXPR and c.spelling in ("write", "write_nb")
            lock = c.kind == ck.VAR_DECL and "write_lock" in c.type.spelling
            if (stream_write or lock) and uses_p(c):
                return True
            lhs = None
            assign = c.kind == ck.COMPOUND_ASSIGNMENT_OPERATOR or (
                c.kind == ck.BINARY_OPERATOR and self._operator(c) == "=") or (
                c.kind == ck.CALL_EXPR and c.spelling in ("operator=", "operator+=", "operator-="))
            if assign:
                lhs = next(c.get_children(), None)
            elif c.kind == ck.UNARY_OPERATOR and any(t.spelling in ("++", "--") for t in c.get_tokens()):
                lhs = c
            if lhs is not None and uses_p(lhs):
                return True
            t = self._target(c) if c.kind == ck.CALL_EXPR else None
            if t is not None and any(uses_p(a) and self._writes(t, i, depth + 1) for i, a in enumerate(self._args(c))):
                return True
        return False

    def _by_reference(self, target, index: int) -> bool:
        ck, tk = self.ci.CursorKind, self.ci.TypeKind
        params = [c for c in target.get_children() if c.kind == ck.PARM_DECL]
        if index >= len(params):
            return True
        t = params[index].type
        return t.kind in (tk.POINTER, tk.LVALUEREFERENCE, tk.RVALUEREFERENCE, tk.CONSTANTARRAY, tk.INCOMPLETEARRAY,
                          tk.DEPENDENTSIZEDARRAY) or t.get_canonical().kind in (tk.POINTER, tk.LVALUEREFERENCE)

    def dataflow(self) -> list[Finding]:
        ck = self.ci.CursorKind
        out = []
        for fn in self.synthesized():
            for comp, procs in self._regions(fn):
                users: dict = {}
                for call in procs:
                    target = self._target(call)
                    for i, a in enumerate(self._args(call)):
                        for d in a.walk_preorder():
                            if d.kind != ck.DECL_REF_EXPR or d.referenced is None:
                                continue
                            v = d.referenced
                            if v.kind not in (ck.VAR_DECL, ck.PARM_DECL):
                                continue
                            if v.kind == ck.VAR_DECL and v.semantic_parent.kind in (ck.NAMESPACE, ck.TRANSLATION_UNIT):
                                continue  # a namespace-scope constant or table
                            if not self._by_reference(target, i):
                                continue  # a scalar by value: each process gets its own copy
                            users.setdefault(v.get_usr() or v.spelling, (v, []))[1].append((call, target, i))
                local = {c.get_usr() for c in comp.walk_preorder() if c.kind == ck.VAR_DECL}
                for v, uses in users.values():
                    procs_of = {self._loc(t) for _, t, _ in uses}
                    if STREAM_TYPES.search(v.type.get_canonical().spelling) or "stream" in v.type.spelling or \
                            v.get_usr() in local:  # a channel: a stream, or an array of the region (ping-pong)
                        writers = [u for u in uses if self._writes(u[1], u[2])]
                        if len(writers) > 1 or len(procs_of) > 2:
                            out.append(self._finding("dataflow-shared", uses[0][0], self._name(fn),
                                                     f"channel {v.spelling}: {len(writers)} writer(s), "
                                                     f"{len(procs_of)} process(es)"))
                    elif len(procs_of) > 1:
                        out.append(self._finding("dataflow-shared", uses[0][0], self._name(fn),
                                                 f"{v.spelling} is read by {len(procs_of)} processes "
                                                 f"({', '.join(sorted(self.defs[p].spelling for p in procs_of))})"))
        return out

    def _mutable_state(self, v) -> bool:
        """Whether variable v outlives a call and can be written: a namespace-scope (file-scope) variable, static
        or not, or a function-scope static, whose type (an array's element type) is not const."""
        ck, tk = self.ci.CursorKind, self.ci.TypeKind
        if v.kind != ck.VAR_DECL:
            return False
        scope = v.semantic_parent.kind if v.semantic_parent is not None else ck.TRANSLATION_UNIT
        if scope not in (ck.NAMESPACE, ck.TRANSLATION_UNIT) and v.storage_class != self.ci.StorageClass.STATIC:
            return False  # a plain local (or a parameter): the process's own
        t = v.type
        while True:  # an array of const elements is a ROM ("const int t[4]": the element carries the const)
            if t.is_const_qualified():
                return False
            if t.kind not in (tk.CONSTANTARRAY, tk.INCOMPLETEARRAY):
                break
            t = t.element_type
        return not any(tok.spelling == "constexpr" for tok in list(v.get_tokens())[:8])

    def dataflow_global(self) -> list[Finding]:
        """Every DATAFLOW region's own statements and the functions reachable from its processes: no reference to
        mutable state outside the arguments (hls/README.md: the top's buffers are passed down by reference)."""
        ck = self.ci.CursorKind
        out, seen = [], set()
        for fn in self.synthesized():
            for comp, procs in self._regions(fn):
                where = [(comp, fn, f"region {self._name(fn)}")]
                reach: set = set()
                for call in procs:
                    reach |= self._reach(self._loc(self._target(call)))
                where += [(self.defs[k], self.defs[k], f"region {self._name(fn)}")
                          for k in sorted(reach, key=lambda k: (k[0], k[1]))]
                for node, owner, region in where:
                    for d in node.walk_preorder():
                        if d.kind != ck.DECL_REF_EXPR or d.referenced is None or not self._mutable_state(d.referenced):
                            continue
                        v = d.referenced
                        key = (v.get_usr() or v.spelling, self._loc(owner))
                        if key in seen:
                            continue
                        seen.add(key)
                        what = "the static" if v.semantic_parent.kind not in (
                            ck.NAMESPACE, ck.TRANSLATION_UNIT) else "the namespace-scope variable"
                        out.append(self._finding("dataflow-global", d, self._name(owner),
                                                 f"{what} {v.spelling}, reached from {region}: pass it down as an "
                                                 "argument from the top"))
        return out

    def _constant(self, expr, loop_vars: set) -> bool:
        ck = self.ci.CursorKind
        for d in expr.walk_preorder():
            if d.kind in (ck.DECL_REF_EXPR, ck.MEMBER_REF_EXPR):
                v = d.referenced
                if v is None:  # a dependent name inside a template: constant by the project's ALL_CAPS convention
                    if re.fullmatch(r"[A-Z][A-Z0-9_]*", d.spelling or ""):
                        continue
                    return False
                if v.kind in (ck.ENUM_CONSTANT_DECL, ck.TEMPLATE_NON_TYPE_PARAMETER) or v.kind in self.func_kinds:
                    continue
                if v.kind == ck.VAR_DECL:
                    toks = [t.spelling for t in v.get_tokens()][:8]
                    if "constexpr" in toks:
                        continue
                    if v.semantic_parent.kind in (ck.NAMESPACE, ck.TRANSLATION_UNIT, ck.STRUCT_DECL) and \
                            v.type.is_const_qualified():
                        continue
                return False
        return True

    def _loop_has_constant_bound(self, loop) -> bool:
        ck = self.ci.CursorKind
        kids = list(loop.get_children())
        loop_vars = {c.get_usr() for k in kids if k.kind == ck.DECL_STMT for c in k.get_children()
                     if c.kind == ck.VAR_DECL}
        cond = None
        for k in kids:
            if k.kind == ck.BINARY_OPERATOR:
                cond = k
                break
            if k.kind == ck.CALL_EXPR:  # a comparison on a dependent type inside a template: read its tokens
                toks = [t.spelling for t in k.get_tokens()]
                cmp = [i for i, t in enumerate(toks) if t in ("<", "<=", "!=")]
                if len(cmp) == 1 and len(toks[:cmp[0]]) == 1:
                    var = next((d for d in k.walk_preorder() if d.kind == ck.DECL_REF_EXPR and d.spelling == toks[0]),
                               None)
                    rhs = [t for t in toks[cmp[0] + 1:] if re.fullmatch(r"[A-Za-z_]\w*", t)]
                    return var is not None and var.referenced is not None and var.referenced.get_usr() in loop_vars \
                        and all(re.fullmatch(r"[A-Z][A-Z0-9_]*", t) for t in rhs)
        if cond is None:
            return False
        conjuncts, todo = [], [cond]
        while todo:
            e = todo.pop()
            kids = list(e.get_children())
            conj = e.kind == ck.BINARY_OPERATOR and len(kids) == 2 and self._operator(e) == "&&"
            if conj or (e.kind == ck.PAREN_EXPR and kids):
                todo += kids
            else:
                conjuncts.append(e)
        for e in conjuncts:
            kids = [k for k in e.get_children()]
            if e.kind != ck.BINARY_OPERATOR or len(kids) != 2 or self._operator(e) not in ("<", "<=", ">", ">=", "!="):
                continue
            sides = []
            for k in kids:
                refs = [d.referenced for d in k.walk_preorder() if d.kind == ck.DECL_REF_EXPR]
                sides.append(len(refs) == 1 and refs[0] is not None and refs[0].get_usr() in loop_vars)
            if (sides[0] and self._constant(kids[1], loop_vars)) or (sides[1] and self._constant(kids[0], loop_vars)):
                return True
        return False

    @staticmethod
    def _operator(e) -> str:
        lhs = next(e.get_children())
        for t in e.get_tokens():
            if t.location.offset >= lhs.extent.end.offset and t.spelling in (
                    "&&", "||", "<", "<=", ">", ">=", "!=", "==", "="):
                return t.spelling
        return ""

    def tripcount(self) -> list[Finding]:
        ck = self.ci.CursorKind
        out = []
        for fn in self.synthesized():
            for loop in fn.walk_preorder():
                if loop.kind not in (ck.FOR_STMT, ck.WHILE_STMT, ck.DO_STMT):
                    continue
                if loop.kind == ck.FOR_STMT and self._loop_has_constant_bound(loop):
                    continue
                body = [k for k in loop.get_children() if k.kind == ck.COMPOUND_STMT]
                text = self._text(body[-1]) if body else self._text(loop)
                head = re.split(r"\b(for|while|do)\b", text, maxsplit=1)[0]  # the body before any nested loop
                if "LOOP_TRIPCOUNT" not in head:
                    label = self._label(fn, loop)
                    out.append(self._finding("tripcount", loop, self._name(fn),
                                             f"loop {label or '(unlabelled)'} has a run-time bound and no "
                                             "LOOP_TRIPCOUNT"))
        return out

    def _label(self, fn, loop) -> str:
        ck = self.ci.CursorKind
        for c in fn.walk_preorder():
            if c.kind == ck.LABEL_STMT and any(k == loop for k in c.get_children()):
                return c.spelling
        return ""

    def storage(self) -> list[Finding]:
        ck, tk = self.ci.CursorKind, self.ci.TypeKind
        fns = self.synthesized()
        decided = set()
        for fn in fns:
            text = self._text(fn)
            decided |= {m.group(2) for m in DECISION.finditer(text)}
            decided |= {m.group(1) for m in DECISION_MACRO.finditer(text)}
        out, seen = [], set()
        for fn in fns:
            for c in fn.walk_preorder():
                v = c.referenced if c.kind == ck.DECL_REF_EXPR else (c if c.kind == ck.VAR_DECL else None)
                if v is None or v.kind != ck.VAR_DECL or v.get_usr() in seen:
                    continue
                t = v.type.get_canonical()
                if t.kind != tk.CONSTANTARRAY:
                    continue
                seen.add(v.get_usr())
                bits = self._bits(t)
                if bits > self.storage_bits and v.spelling not in decided:
                    out.append(self._finding("storage", v, self._name(fn),
                                             f"array {v.spelling} ({bits} bits) has no partition / reshape / "
                                             "storage decision"))
        return out

    def _bits(self, t) -> int:
        tk = self.ci.TypeKind
        n = 1
        while t.kind == tk.CONSTANTARRAY:
            n *= t.element_count
            t = t.element_type.get_canonical()
        m = re.match(r"(?:(?:const|volatile)\s+)*ap_u?int<(\d+)>", t.spelling)  # a const value is one too
        return n * (int(m.group(1)) if m else max(t.get_size(), 1) * 8)

    def run(self, rules: tuple[str, ...] = RULES) -> list[Finding]:
        table = {"stream-pointer": self.stream_pointers, "recursion": self.recursion, "int64": self.int64,
                 "dataflow-shared": self.dataflow, "dataflow-global": self.dataflow_global,
                 "tripcount": self.tripcount, "storage": self.storage}
        return [f for r in rules for f in table[r]()]


def apply_baseline(findings: list[Finding], baseline: dict[str, int]) -> tuple[list[Finding], list[str]]:
    """Findings beyond the baseline's counts, and baseline keys that have fewer findings than they allow."""
    counts = Counter(f.key() for f in findings)
    used: Counter = Counter()
    extra = []
    for f in findings:
        used[f.key()] += 1
        if used[f.key()] > baseline.get(f.key(), 0):
            extra.append(f)
    stale = [k for k, n in baseline.items() if counts.get(k, 0) < n]
    return extra, stale


def main(argv: list[str] | None = None) -> int:
    from m3vit.cli.args import Parser, int_in
    from m3vit.cli.outputs import OutputError, check_out_file, write_text_atomic

    # Parser: an argument error is one line, as in every m3vit tool
    p = Parser(prog="check_hls.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, help="a C++ file to check instead of the accelerator's top")
    p.add_argument("--top", default="m3vit_accel", help="the top function (synthesized = reachable from it)")
    p.add_argument("--config", default="m3vit-tiny")
    p.add_argument("--mode", default="w8a8")
    p.add_argument("--baseline", type=Path, help="JSON {\"RULE function\": count} of accepted findings")
    p.add_argument("--write-baseline", type=Path, help="write the int64 findings as the new baseline (review the diff: "
                   "it may only shrink)")
    p.add_argument("--rules", default=",".join(RULES), help="comma-separated subset of " + ", ".join(RULES))
    p.add_argument("--storage-bits", type=int_in(1, 1 << 30), default=DEFAULT_STORAGE_BITS,
                   help="an array of more bits needs a storage decision (BIND_STORAGE or ARRAY_PARTITION)")
    a = p.parse_args(argv)
    try:
        rules = tuple(r for r in a.rules.split(",") if r)
        if not rules or any(r not in RULES for r in rules):
            raise BadInput(f"--rules: choose from {', '.join(RULES)}")
        baseline = {}
        if a.baseline is not None:
            try:
                baseline = json.loads(a.baseline.read_text())
            except (OSError, ValueError) as exc:
                raise BadInput(f"--baseline {a.baseline}: {exc}") from exc
            if not isinstance(baseline, dict) or not all(
                    isinstance(k, str) and isinstance(n, int) and not isinstance(n, bool) for k, n in baseline.items()):
                raise BadInput(f"--baseline {a.baseline}: expected a JSON object {{\"RULE function\": count}}, as "
                               f"--write-baseline writes")
        if a.write_baseline is not None:
            try:  # before the parse: a folder or a read-only place is one line, not a traceback at the end
                check_out_file(a.write_baseline, "--write-baseline")
            except OutputError as exc:
                raise BadInput(str(exc)) from None
        from m3vit.configs import CONFIGS, get_config
        from m3vit.hw.gen.hls_config import HlsParams, config_key, write_config_header
        from m3vit.quant.spec import MODES, get_mode

        if a.config not in CONFIGS or a.mode not in MODES:
            raise BadInput(f"unknown --config {a.config!r} or --mode {a.mode!r}")
        cfg, mode = get_config(a.config), get_mode(a.mode)
        params = HlsParams.for_mode(mode)
        hdr = write_config_header(cfg, mode, params, REPO / "build" / "hls" / config_key(cfg, mode, params)).parent
        source = a.source or REPO / "hls" / "src" / "m3vit_accel.cpp"
        if not source.is_file():
            raise BadInput(f"--source {source}: no such file")
        project = REPO / "hls" if a.source is None else source.parent
        checker = Checker(source, default_args(hdr), a.top, project, a.storage_bits)
        findings = checker.run(rules)
    except BadInput as exc:
        print(f"check_hls: {exc}", file=sys.stderr)
        return 2
    if a.write_baseline is not None:
        counts = Counter(f.key() for f in findings if f.rule == "int64")
        write_text_atomic(a.write_baseline, json.dumps(dict(sorted(counts.items())), indent=1) + "\n")
    extra, stale = apply_baseline(findings, baseline)
    for f in extra:
        print(f)
    for k in stale:
        print(f"stale baseline entry (fewer findings now; lower it): {k} {baseline[k]}")
    accepted = len(findings) - len(extra)
    print(f"check_hls: {len(checker.reached)} synthesized functions, {len(extra)} finding(s)"
          + (f", {accepted} accepted by the baseline" if baseline else ""))
    return 1 if extra else 0


if __name__ == "__main__":
    sys.exit(main())
