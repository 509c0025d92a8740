"""In-memory SSA model of an LLVM module, read from llvmlite.

The model is deliberately thin: every instruction keeps its LLVM text (without
metadata attachments), its opcode, its result type and its operands as model
values, so analyses can walk def-use chains while code generation re-emits the
text with operands renamed (see :func:`rename`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_PLAIN = re.compile(r"^[-a-zA-Z$._][-a-zA-Z$._0-9]*$")
_TOKEN = re.compile(r'%(?:"((?:[^"\\]|\\.)*)"|([-a-zA-Z$._0-9]+))')


def local_ref(name: str) -> str:
    """LLVM text for the local value or label called ``name``."""
    return "%" + name if _PLAIN.match(name) else '%"' + name + '"'


def rename(text: str, mapping: dict) -> str:
    """Replace every ``%name`` token of ``text`` found in ``mapping`` by its value.

    ``mapping`` maps a bare value name to replacement LLVM text (a ``%ref`` or a
    constant).  Tokens not in the mapping are left alone.
    """
    def sub(m):
        name = m.group(1) if m.group(1) is not None else m.group(2)
        return mapping.get(name, m.group(0))
    return _TOKEN.sub(sub, text)


def local_names(text: str) -> list:
    """The names of the ``%name`` tokens of ``text`` (values and labels), in order."""
    return [m.group(1) if m.group(1) is not None else m.group(2) for m in _TOKEN.finditer(text)]


FLOAT_TYPES = {"double": 8, "float": 4}
_INT = re.compile(r"^i(\d+)$")


def type_size(ty: str) -> int:
    """Store size in bytes of a first-class scalar LLVM type (used for tapes)."""
    if ty in FLOAT_TYPES:
        return FLOAT_TYPES[ty]
    if ty == "ptr":
        return 8
    m = _INT.match(ty)
    if m:
        return max(1, (int(m.group(1)) + 7) // 8)
    raise ValueError(f"no tape size for LLVM type {ty}")


def is_float(ty: str) -> bool:
    return ty in FLOAT_TYPES


@dataclass(eq=False)
class Value:
    """A value: kind is 'arg', 'inst', 'const', 'global' or 'func'."""
    kind: str
    type: str
    name: str = ""
    text: str = ""          # for constants: the constant's text without type

    @property
    def ref(self) -> str:
        if self.kind in ("arg", "inst"):
            return local_ref(self.name)
        if self.kind in ("global", "func"):
            return "@" + (self.name if _PLAIN.match(self.name) else '"' + self.name + '"')
        return self.text

    def typed(self) -> str:
        return f"{self.type} {self.ref}"

    def __repr__(self):
        return f"<{self.kind} {self.type} {self.ref}>"


@dataclass(eq=False, repr=False)
class Instruction(Value):
    opcode: str = ""
    operands: list = field(default_factory=list)
    block: "Block" = None
    incoming: list = field(default_factory=list)     # phi: [(Value, block name)]
    callee: str = ""                                 # call: callee name
    line: tuple = None                               # (file, line) when known
    index: int = 0                                   # position in function

    @property
    def is_terminator(self) -> bool:
        return self.opcode in ("br", "ret", "switch", "unreachable", "indirectbr",
                               "invoke", "resume", "callbr")

    @property
    def has_value(self) -> bool:
        return self.type != "void" and bool(self.name)

    def successors(self) -> list:
        """Successor block names of a terminator, in operand order."""
        if self.opcode == "br":
            labs = [o for o in self.operands if o.kind == "label"]
            # llvmlite lists a conditional branch's targets as (false, true)
            if len(labs) == 2:
                return [labs[1].name, labs[0].name]
            return [l.name for l in labs]
        if self.opcode == "switch":
            return [o.name for o in self.operands if o.kind == "label"]
        return []

    def __repr__(self):
        return f"<inst {self.text.strip()}>"


@dataclass(eq=False)
class Block:
    name: str
    instructions: list = field(default_factory=list)
    preds: list = field(default_factory=list)        # unique predecessor names
    succs: list = field(default_factory=list)        # unique successor names

    @property
    def terminator(self) -> Instruction:
        return self.instructions[-1]

    def phis(self):
        for ins in self.instructions:
            if ins.opcode != "phi":
                break
            yield ins

    def body(self):
        """Instructions that are neither phis nor the terminator."""
        return [i for i in self.instructions[:-1] if i.opcode != "phi"]


@dataclass(eq=False)
class Function:
    name: str
    ret_type: str
    args: list
    blocks: list = field(default_factory=list)
    is_declaration: bool = False
    header: str = ""        # declaration text for declarations
    linkage: str = ""
    cconv: str = ""

    def block(self, name) -> Block:
        return self._by_name[name]

    def index(self):
        self._by_name = {b.name: b for b in self.blocks}
        n = 0
        for b in self.blocks:
            for i in b.instructions:
                i.index = n
                n += 1

    def instructions(self):
        for b in self.blocks:
            yield from b.instructions

    @property
    def entry(self) -> Block:
        return self.blocks[0]


@dataclass(eq=False)
class Module:
    triple: str
    datalayout: str
    globals_text: list          # global variable definitions, verbatim
    functions: dict             # name -> Function
    debug_lines: dict = field(default_factory=dict)   # metadata id -> (file, line)
