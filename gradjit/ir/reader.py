"""Read an llvmlite module into the gradjit SSA model (:mod:`gradjit.ir.model`)."""
from __future__ import annotations

import re

import llvmlite.binding as llvm

from .model import Block, Function, Instruction, Module, Value

_META = re.compile(r",\s*![A-Za-z_.][\w.]*\s+(?:![0-9]+|!\{[^}]*\})")
_ATTR_GROUP = re.compile(r"\s#[0-9]+\b")
# a function's own metadata attachments (``define ... !dbg !4 {``: no comma)
_HEADER_META = re.compile(r"\s+![A-Za-z_.][\w.]*\s+![0-9]+")
_DBG = re.compile(r"!dbg\s+!([0-9]+)")
_DILOC = re.compile(r"^!(\d+) = !DILocation\(line: (\d+)(?:, column: \d+)?, scope: !(\d+)")
_DISCOPE = re.compile(r"^!(\d+) = (?:distinct )?!DI(?:Subprogram|LexicalBlock(?:File)?)\((.*)\)")
_DIFILE = re.compile(r'^!(\d+) = !DIFile\(filename: "([^"]*)", directory: "([^"]*)"')


def strip_metadata(text: str) -> str:
    """Instruction or declaration text without metadata attachments or attribute groups."""
    lines = [l for l in text.split("\n") if l.strip() and not l.strip().startswith(("#dbg_", ";"))]
    text = lines[0] if len(lines) == 1 else "\n".join(lines)
    text = _META.sub("", text)
    return _ATTR_GROUP.sub("", text)


def _debug_lines(module_text: str) -> dict:
    files, scopes, locs = {}, {}, {}
    for line in module_text.splitlines():
        if not line.startswith("!"):
            continue
        m = _DIFILE.match(line)
        if m:
            files[m.group(1)] = m.group(3).rstrip("/") + "/" + m.group(2) if m.group(3) else m.group(2)
            continue
        m = _DILOC.match(line)
        if m:
            locs[m.group(1)] = (int(m.group(2)), m.group(3))
            continue
        m = _DISCOPE.match(line)
        if m:
            fm = re.search(r"file: !(\d+)", m.group(2))
            if fm:
                scopes[m.group(1)] = fm.group(1)
    out = {}
    for k, (line, scope) in locs.items():
        f = scopes.get(scope)
        out[k] = (files.get(f, "<unknown>"), line)
    return out


def _operand(op, values) -> Value:
    kind = op.value_kind.name
    if kind == "argument" or kind == "instruction":
        return values[op.name]
    if kind == "basic_block":
        return Value("label", "label", op.name)
    if kind == "function":
        return Value("func", "ptr", op.name)
    if kind in ("global_variable", "global_alias", "global_ifunc"):
        return Value("global", "ptr", op.name)
    if kind in ("metadata_as_value", "inline_asm"):
        return Value("meta", str(op.type), "", "")
    ty = str(op.type)
    text = str(op)
    if text.startswith(ty + " "):
        text = text[len(ty) + 1:]
    return Value("const", ty, "", text)


def read_function(fn, debug_lines=None) -> Function:
    """Build a :class:`Function` from an llvmlite function ``ValueRef``.

    Unnamed arguments, blocks and instructions are given names first
    (``gj.aN``, ``gj.bN``, ``gj.vN``) so every value can be referred to in text.
    """
    debug_lines = debug_lines or {}
    args = []
    values = {}
    for k, a in enumerate(fn.arguments):
        if not a.name:
            a.name = f"gj.a{k}"
        v = Value("arg", str(a.type), a.name)
        args.append(v)
        values[a.name] = v
    ftext = None
    f = Function(fn.name, "", args, linkage=fn.linkage.name)
    if fn.is_declaration:
        f.is_declaration = True
        f.header = strip_metadata(str(fn).strip())
        return f
    nb = nv = 0
    blocks = list(fn.blocks)
    for b in blocks:
        if not b.name:
            b.name = f"gj.b{nb}"
            nb += 1
        for ins in b.instructions:
            if not ins.name and str(ins.type) != "void":
                ins.name = f"gj.v{nv}"
                nv += 1
    ftext = str(fn)
    header = ftext[ftext.index("define"):ftext.index("{", ftext.index("define"))]
    f.header = _HEADER_META.sub("", _ATTR_GROUP.sub("", header))
    f.ret_type = str(fn.global_value_type).split(" (")[0] if fn.global_value_type else ""
    f.cconv = "fastcc" if " fastcc " in header else ""
    # first pass: create instruction values so forward references resolve
    pending = []
    for b in blocks:
        blk = Block(b.name)
        f.blocks.append(blk)
        for ins in b.instructions:
            raw = str(ins)
            if "@llvm.experimental.noalias.scope.decl" in raw:
                continue              # a scope hint whose metadata operand we do not keep
            text = strip_metadata(raw)
            i = Instruction("inst", str(ins.type), ins.name, opcode=ins.opcode, block=blk)
            i.text = text
            m = _DBG.search(raw)
            if m and m.group(1) in debug_lines:
                i.line = debug_lines[m.group(1)]
            if ins.name:
                values[ins.name] = i
            blk.instructions.append(i)
            pending.append((i, ins))
    for i, ins in pending:
        ops = list(ins.operands)
        i.operands = [_operand(o, values) for o in ops]
        if i.opcode == "phi":
            i.incoming = list(zip(i.operands, [bb.name for bb in ins.incoming_blocks]))
        elif i.opcode in ("call", "invoke"):
            callee = i.operands[-1]
            i.callee = callee.name if callee.kind == "func" else ""
    for blk in f.blocks:
        blk.succs = list(dict.fromkeys(blk.terminator.successors()))
    f.index()
    for blk in f.blocks:
        for s in blk.succs:
            sb = f.block(s)
            if blk.name not in sb.preds:
                sb.preds.append(blk.name)
    return f


def read_module(mod: "llvm.ModuleRef", only=None) -> Module:
    """Read ``mod``; ``only`` (a set of names) limits which definitions are read."""
    text = str(mod)
    dbg = _debug_lines(text) if "!DILocation" in text else {}
    functions = {}
    for fn in mod.functions:
        if only is not None and fn.name not in only and not fn.is_declaration:
            continue
        functions[fn.name] = read_function(fn, dbg)
    gl = [strip_metadata(str(g).strip()) for g in mod.global_variables]
    return Module(mod.triple, str(mod.data_layout), gl, functions, dbg)
