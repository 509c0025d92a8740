"""Trip counts of loops whose control runs on constants, found by running it.

After Numba's lowering and the pre-AD pipeline, a loop such as ``int_power``'s
square-and-multiply loop for ``x ** 2`` has no ``for i in range(a, b)`` shape: its
exit test is a phi of ``i1`` constants, or a shift recurrence ``b >>= 1`` that
starts at a constant.  :func:`executed_trip_count` finds how often the header of
such a loop runs by executing the integer part of the loop on constants, one
iteration at a time, the way ScalarEvolution's brute-force exit count does
(LLVM ``ScalarEvolution::computeExitCountExhaustively``), and gives up as soon as
a branch depends on anything that is not a constant (an argument, a load, a
float).  Time is linear in the instructions executed, which ``limit`` (trips of
the loop) and the instruction cap of :func:`run_loop` bound.
"""
from __future__ import annotations

import re

_ICMP = re.compile(r"\bicmp\s+(?:samesign\s+)?(\w+)")
_INT = re.compile(r"^i(\d+)$")
_MAX_DEPTH = 64
#: Integer instructions that fold away once the loop is unrolled (constants and
#: addresses); loads and calls returning integers are work like any other.
_INT_OPS = {"add", "sub", "mul", "and", "or", "xor", "shl", "lshr", "ashr", "icmp", "select",
            "zext", "sext", "trunc", "freeze"}
_CASE = re.compile(r'i\d+ (-?\d+), label %(?:([-\w.$]+)|"((?:[^"\\]|\\.)*)")')


def _width(ty: str):
    m = _INT.match(ty)
    return int(m.group(1)) if m else None


def _signed(v: int, w: int) -> int:
    return v - (1 << w) if v >> (w - 1) & 1 else v


def _constant(v):
    """The value of integer constant ``v`` modulo 2**width, or None."""
    w = _width(v.type)
    if w is None:
        return None
    t = v.text.strip()
    if t == "true":
        return 1
    if t == "false":
        return 0
    try:
        return int(t) % (1 << w)
    except ValueError:
        return None          # undef, poison, constant expressions


def _binary(op, a, b, w, mask):
    if op == "add":
        return (a + b) & mask
    if op == "sub":
        return (a - b) & mask
    if op == "mul":
        return (a * b) & mask
    if op == "and":
        return a & b
    if op == "or":
        return a | b
    if op == "xor":
        return a ^ b
    if op in ("shl", "lshr", "ashr"):
        if b >= w:
            return None              # poison
        if op == "shl":
            return (a << b) & mask
        if op == "lshr":
            return a >> b
        return (_signed(a, w) >> b) & mask
    return None


def _compare(pred, a, b, w):
    if pred.startswith("s"):
        a, b = _signed(a, w), _signed(b, w)
    rel = pred[1:] if pred[0] in "su" else pred
    return int({"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b,
                "gt": a > b, "ge": a >= b}[rel])


class _Run:
    """Integer values of one execution of a loop: ``env`` maps the names of the
    loop's instructions executed in the current iteration to their values."""

    def __init__(self, loop):
        self.loop = loop
        self.env = {}

    def value(self, v, depth=0):
        """Value of ``v`` in the current iteration (int modulo 2**width), or None."""
        if v.kind == "const":
            return _constant(v)
        if v.kind != "inst" or v.block is None or v.block.name not in self.loop.blocks:
            return None                      # arguments, globals, loop-invariant code
        if v.name in self.env:
            return self.env[v.name]
        if depth > _MAX_DEPTH or v.opcode == "phi":
            return None                      # a phi gets its value on block entry
        got = self._compute(v, depth)
        self.env[v.name] = got
        return got

    def _compute(self, ins, depth):
        w = _width(ins.type)
        op = ins.opcode
        if w is None:
            return None
        vals = [self.value(o, depth + 1) for o in ins.operands]
        if op == "select":
            c = vals[0]
            return None if c is None else (vals[1] if c else vals[2])
        if any(x is None for x in vals):
            return None
        mask = (1 << w) - 1
        if op == "icmp":
            m = _ICMP.search(ins.text)
            wa = _width(ins.operands[0].type)
            return None if m is None or wa is None else _compare(m.group(1), vals[0], vals[1], wa)
        if op in ("zext", "trunc", "freeze"):
            return vals[0] & mask
        if op == "sext":
            wa = _width(ins.operands[0].type)
            return None if wa is None else _signed(vals[0], wa) & mask
        if len(vals) == 2:
            return _binary(op, vals[0], vals[1], w, mask)
        return None

    def enter(self, block, pred):
        """Values of the phis of ``block``, entered from ``pred`` (all read before any
        is written, as phis are); the block's other values are forgotten, as the
        block runs again (a loop nested in the one run)."""
        got = {}
        for phi in block.phis():
            got[phi.name] = next((self.value(v) for v, b in phi.incoming if b == pred), None)
        for ins in block.instructions:
            self.env.pop(ins.name, None)
        return got


def _next_block(run, term):
    """Successor taken by terminator ``term`` in the current iteration, or None."""
    if term.opcode == "br":
        labels = term.successors()
        if len(labels) == 1:
            return labels[0]
        c = run.value(term.operands[0])
        return None if c is None else labels[0 if c else 1]
    if term.opcode == "switch":
        c = run.value(term.operands[0])
        if c is None:
            return None
        # the case values are not operands (LLVM 22): read them from the text
        w = _width(term.operands[0].type)
        cases = _CASE.findall(term.text[term.text.index("["):])
        if len(cases) != len(term.operands) - 2:
            return None                          # a case value this does not read
        for val, label, quoted in cases:
            if int(val) % (1 << w) == c:
                return quoted or label
        return term.operands[1].name
    return None


def executed_trip_count(fn, loop, limit: int):
    """How many times the header of ``loop`` (a :class:`~gradjit.analysis.loops.Loop`
    of ``fn``) runs when the loop is entered, if its control flow depends on
    constants only and that is at most ``limit``; else None (see :func:`run_loop`)."""
    got = run_loop(fn, loop, limit)
    return None if got is None else got[0]


def run_loop(fn, loop, limit: int, max_instructions: int = None):
    """``(trips, instructions)``: how many times the header of ``loop`` runs and how
    many instructions one execution of the loop runs (loops nested in it
    included), if its control flow depends on constants only, the header runs
    at most ``limit`` times and at most ``max_instructions`` instructions run;
    else None.  Phis, terminators and integer arithmetic (:data:`_INT_OPS`) are
    not counted: with the loop unrolled they fold into constants and addresses.

    The loop must have a single entering block.  Each iteration follows the
    branches taken from the header until the control returns to the header (the
    next iteration, whose header phis take the values of this one) or leaves
    the loop (the count is known).  A branch on a value that is not an integer
    computed from constants, or a terminator other than ``br``/``switch``, gives
    None.
    """
    header = fn.block(loop.header)
    outside = [p for p in header.preds if p not in loop.blocks]
    if len(outside) != 1:
        return None
    run = _Run(loop)
    block, pred = header, outside[0]
    trips = executed = 0
    cap = max_instructions if max_instructions is not None else \
        (limit + 1) ** 2 * sum(len(fn.block(b).instructions) for b in loop.blocks)
    work = {b: sum(1 for i in fn.block(b).instructions[:-1]
                   if i.opcode != "phi" and not (_width(i.type) and i.opcode in _INT_OPS))
            for b in loop.blocks}
    steps = (limit + 1) ** 2 * len(loop.blocks) * 64
    while executed <= cap and steps > 0:
        steps -= 1
        executed += work[block.name]
        incoming = run.enter(block, pred)
        if block is header:
            trips += 1
            if trips > limit:
                return None
            run.env = {}
        run.env.update(incoming)
        nxt = _next_block(run, block.terminator)
        if nxt is None:
            return None
        if nxt not in loop.blocks:
            return (trips, executed) if executed <= cap else None
        block, pred = fn.block(nxt), block.name
    return None
