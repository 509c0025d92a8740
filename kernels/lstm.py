"""GradBench ``lstm``: loss of ADBench's diagonal LSTM on a character sequence.

This is the GradBench ``lstm`` eval (``evals/lstm/README.md`` in
https://github.com/gradbench/gradbench; the objective is defined by the eval's
golden implementation ``cpp/gradbench/evals/lstm.hpp``, taken from ADBench).
It is an LSTM whose weight "matrices" are all diagonal, run over a text encoded
as bit vectors, with a softmax prediction of the next character's bits.

Notation (NumPy shapes, C-contiguous ``float64``; ``l`` layers, hidden size
``b`` = number of bits per character, ``c`` characters)::

    main_params  : (2l, 4b)  row 2i   = weights of layer i, row 2i+1 = its biases;
                             each row is [forget | ingate | outgate | change], b each
    extra_params : (3, b)    rows: input weight, output weight, output bias
    state        : (2l, b)   row 2i   = hidden state of layer i, row 2i+1 = its cell
    sequence     : (c, b)    the text, one row of bits (0.0 / 1.0) per character

One layer, elementwise over ``j < b`` (``sigma`` = logistic sigmoid, ``x`` the
layer input, ``h``/``s`` the layer's hidden/cell state, ``W``/``B`` its weight and
bias rows)::

    f = sigma(x[j] W_f[j] + B_f[j])      i = sigma(h[j] W_i[j] + B_i[j])
    o = sigma(x[j] W_o[j] + B_o[j])      g = tanh (h[j] W_c[j] + B_c[j])
    s[j] <- s[j] f + i g                 h[j] <- o tanh(s[j])

Prediction for input character ``x_t``: the first layer's input is
``x_t * extra_params[0]``; layer ``i > 0`` takes the (already updated) hidden
state of layer ``i - 1``; the output is ``y = h_last * extra_params[1] +
extra_params[2]``.  The state is carried across time steps.  The loss is::

    lse_t   = log(2 + sum_j exp(y_t[j]))              (ADBench's "+2" quirk)
    loss    = - sum_{t=0}^{c-2} sum_j x_{t+1}[j] (y_t[j] - lse_t) / ((c - 1) b)

The eval's two functions are ``objective`` (the float loss) and ``jacobian``
(its gradient with respect to ``main_params`` and ``extra_params``, each
flattened row by row and concatenated: ``8lb + 3b`` values).

:func:`lstm_objective` is the Numba kernel (loops, ``math`` scalar calls, a state
copy from ``np.copy``), differentiated by gradjit in reverse mode;
:func:`lstm_objective_reference` is an independent NumPy version that vectorises
over the hidden units.
"""

import math

import numba
import numpy as np

import gradjit  # imported first: its hook must see Numba compile the kernels below

__all__ = [
    "lstm_objective",
    "lstm_objective_reference",
    "lstm_predict",
    "lstm_model",
    "make_inputs",
    "synthetic_text",
    "text_to_matrix",
]


# ---------------------------------------------------------------------------
# Numba kernel
# ---------------------------------------------------------------------------


@numba.njit
def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))`` of a float."""
    return 1.0 / (1.0 + math.exp(-x))


@numba.njit
def lstm_model(weight, bias, hidden, cell, inp):
    """One diagonal LSTM layer, updating ``hidden`` and ``cell`` in place.

    Parameters
    ----------
    weight, bias : float64 arrays, shape (4b,)
        ``[forget | ingate | outgate | change]`` weights and biases of the layer.
    hidden, cell : float64 arrays, shape (b,)
        The layer's state; overwritten with the new state.
    inp : float64 array, shape (b,)
        The layer's input.
    """
    b = hidden.shape[0]
    for j in range(b):
        forget = sigmoid(inp[j] * weight[j] + bias[j])
        ingate = sigmoid(hidden[j] * weight[b + j] + bias[b + j])
        outgate = sigmoid(inp[j] * weight[2 * b + j] + bias[2 * b + j])
        change = math.tanh(hidden[j] * weight[3 * b + j] + bias[3 * b + j])
        cell[j] = cell[j] * forget + ingate * change
        hidden[j] = outgate * math.tanh(cell[j])


@numba.njit
def lstm_predict(main_params, extra_params, state, x, out):
    """Run all layers on input ``x`` (shape (b,)), writing the prediction to ``out``.

    ``main_params`` (2l, 4b), ``extra_params`` (3, b); ``state`` (2l, b) is
    updated in place; ``out`` is a float64 array of shape (b,).
    """
    b = x.shape[0]
    n_layers = main_params.shape[0] // 2
    for j in range(b):
        out[j] = x[j] * extra_params[0, j]
    layer_input = out
    for i in range(n_layers):
        lstm_model(main_params[2 * i], main_params[2 * i + 1],
                   state[2 * i], state[2 * i + 1], layer_input)
        layer_input = state[2 * i]
    for j in range(b):
        out[j] = layer_input[j] * extra_params[1, j] + extra_params[2, j]


@numba.njit
def lstm_objective(main_params, extra_params, state, sequence):
    """GradBench ``lstm`` objective: mean negative log-likelihood of the next bits.

    Parameters
    ----------
    main_params : float64 array, shape (2l, 4b)
    extra_params : float64 array, shape (3, b)
    state : float64 array, shape (2l, b)
        Initial state (not modified: the kernel works on a copy).
    sequence : float64 array, shape (c, b), c >= 2

    Returns
    -------
    float
        The loss defined in the module docstring.
    """
    b = sequence.shape[1]
    c = sequence.shape[0]
    st = state.copy()
    ypred = np.empty(b)
    total = 0.0
    count = 0
    for t in range(c - 1):
        lstm_predict(main_params, extra_params, st, sequence[t], ypred)
        s = 0.0
        for j in range(b):
            s += math.exp(ypred[j])
        lse = math.log(s + 2.0)
        for j in range(b):
            total += sequence[t + 1, j] * (ypred[j] - lse)
        count += b
    return -total / count


# ---------------------------------------------------------------------------
# Independent reference
# ---------------------------------------------------------------------------


def lstm_objective_reference(main_params, extra_params, state, sequence):
    """NumPy version of :func:`lstm_objective` (same arguments), vectorised over b."""
    main_params = np.asarray(main_params, dtype=np.float64)
    extra_params = np.asarray(extra_params, dtype=np.float64)
    seq = np.asarray(sequence, dtype=np.float64)
    n_layers = main_params.shape[0] // 2
    b = seq.shape[1]
    W = main_params[0::2].reshape(n_layers, 4, b)
    B = main_params[1::2].reshape(n_layers, 4, b)
    h = np.array(state[0::2], dtype=np.float64)
    s = np.array(state[1::2], dtype=np.float64)
    sig = lambda z: 0.5 * (1.0 + np.tanh(0.5 * z))  # noqa: E731  (= 1/(1+e^-z))
    ys = []
    for t in range(seq.shape[0] - 1):
        x = seq[t] * extra_params[0]
        for i in range(n_layers):
            f = sig(x * W[i, 0] + B[i, 0])
            g_in = sig(h[i] * W[i, 1] + B[i, 1])
            o = sig(x * W[i, 2] + B[i, 2])
            g = np.tanh(h[i] * W[i, 3] + B[i, 3])
            s[i] = s[i] * f + g_in * g
            h[i] = o * np.tanh(s[i])
            x = h[i]
        ys.append(x * extra_params[1] + extra_params[2])
    y = np.array(ys)                                     # (c-1, b)
    lse = np.log(np.sum(np.exp(y), axis=1) + 2.0)        # (c-1,)
    return float(-np.sum(seq[1:] * (y - lse[:, None])) / y.size)


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

_WORDS = (
    "from fairest creatures we desire increase that thereby beauty rose might never "
    "die but as the riper should by time decease his tender heir bear memory thou "
    "contracted to thine own bright eyes feed thy light flame with self substantial "
    "fuel making a famine where abundance lies foe sweet cruel art now world fresh "
    "ornament and only herald gaudy spring within bud buriest content churl waste"
).split()


def synthetic_text(char_count, seed=1609):
    """A deterministic pseudo-English text of ``char_count`` characters.

    GradBench draws its sequences from ``evals/lstm/data/lstm_full.txt`` (the
    text of Shakespeare's Sonnets, as in ADBench), which is not available here;
    this stands in for it with the same structure: words, spaces, punctuation,
    newlines, capitals and the typographic apostrophe ``'\u2019'`` (U+2019) that
    the Sonnets use, so the text needs ``ceil(log2(8217)) = 14`` bits per
    character, as the real one does (ADBench's LSTM inputs have ``b = 14``).
    Words come from a seeded ``numpy.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    parts, n = [], 0
    line = 0
    while n < char_count:
        w = _WORDS[rng.integers(len(_WORDS))]
        if line == 0:
            w = w.capitalize()
        r = rng.random()
        if r < 0.08:
            w += "\u2019s"
        elif r < 0.16:
            w += ","
        line += 1
        if line >= 7 + rng.integers(3):
            w += rng.choice([":", ";", ".", ","]) + "\n"
            line = 0
        else:
            w += " "
        parts.append(w)
        n += len(w)
    text = "".join(parts)[:char_count]
    # the first line always carries the apostrophe, as the Sonnets' second line does
    if "\u2019" not in text[:char_count]:
        text = text[: char_count // 2] + "\u2019" + text[char_count // 2 + 1:]
    return text


def char_bits(text):
    """Bits per character, ``ceil(log2(max code point))`` (GradBench's rule)."""
    return math.ceil(math.log2(max(ord(ch) for ch in text)))


def text_to_matrix(text, bits):
    """``(len(text), bits)`` float64 matrix of each character's code point in
    binary, most significant bit first (GradBench's ``text_to_matrix``)."""
    codes = np.array([ord(ch) for ch in text], dtype=np.int64)
    shifts = np.arange(bits - 1, -1, -1)
    return ((codes[:, None] >> shifts[None, :]) & 1).astype(np.float64)


def make_inputs(l, c, seed=31337, text=None):
    """Inputs of :func:`lstm_objective` for ``l`` layers and ``c`` characters.

    Follows ``gen_lstm`` of GradBench's ``python/gradbench/gradbench/evals/lstm/run.py``
    (gradbench/gradbench commit f26651a7): the first ``c`` characters of the text
    become the ``(c, b)`` bit matrix with ``b = ceil(log2(max code point))``, then
    ``state ~ U[0,1)^(2l, b)``, ``main_params ~ U[0,1)^(2l, 4b)``,
    ``extra_params ~ U[0,1)^(3, b)`` in that order.  Differences, forced by what
    is available: the text is :func:`synthetic_text` (unless ``text`` is given)
    instead of ``lstm_full.txt``, and the uniforms come from
    ``numpy.random.default_rng(seed)`` instead of GradBench's unseeded global
    ``np.random.random`` (so GradBench's own inputs are not reproducible either).

    Returns
    -------
    tuple
        ``(main_params, extra_params, state, sequence)``, C-contiguous float64.
    """
    use_text = (synthetic_text(c) if text is None else text)[:c]
    bits = char_bits(use_text)
    sequence = text_to_matrix(use_text, bits)
    rng = np.random.default_rng(seed)
    state = rng.random((2 * l, bits))
    main_params = rng.random((2 * l, 4 * bits))
    extra_params = rng.random((3, bits))
    return main_params, extra_params, state, sequence


# ---------------------------------------------------------------------------
# GradBench interface (see benchmarks/README.md)
# ---------------------------------------------------------------------------

MODULE = "lstm"
PRIMAL, DERIVATIVE = "objective", "jacobian"
SIZES = {
    "quick": [dict(l=2, c=1024), dict(l=4, c=1024)],
    # evals/lstm/run.py: -l 2 4 6, -c 1024 4096 8192, sorted by l * c
    "default": sorted([dict(l=l, c=c) for l in (2, 4, 6) for c in (1024, 4096, 8192)],
                      key=lambda s: s["l"] * s["c"]),
}
_ARGNUMS = (0, 1)


def generate(seed=31337, l=2, c=1024):
    """A GradBench ``lstm`` input (``gen_lstm(...).to_dict()`` of evals/lstm/run.py)."""
    main_params, extra_params, state, sequence = make_inputs(l, c, seed=seed)
    return {"main_params": main_params.tolist(), "extra_params": extra_params.tolist(),
            "state": state.tolist(), "sequence": sequence.tolist()}


def prepare(function, input):
    """JSON input -> argument tuple of :func:`lstm_objective` (not timed)."""
    f = lambda key: np.ascontiguousarray(np.asarray(input[key], dtype=np.float64))  # noqa: E731
    return f("main_params"), f("extra_params"), f("state"), f("sequence")


_grad = gradjit.grad(lstm_objective, argnums=_ARGNUMS)


def gradient(main_params, extra_params, state, sequence):
    """``(d loss / d main_params, d loss / d extra_params)`` with gradjit (reverse mode).

    Arrays of the shapes of ``main_params`` (2l, 4b) and ``extra_params`` (3, b)
    (float64), compiled on the first call.
    """
    return _grad(main_params, extra_params, state, sequence)


def evaluate(function, args):
    """The timed computation: the objective, or its gradient with gradjit."""
    if function == PRIMAL:
        return lstm_objective(*args)
    if function == DERIVATIVE:
        return gradient(*args)
    raise ValueError(f"lstm has no function {function!r}")


def output(function, result):
    """``objective``: a float; ``jacobian``: the flat gradient as a list (row-major
    ``main_params`` then ``extra_params``, as the golden C++ tool flattens them)."""
    if function == PRIMAL:
        return float(result)
    return flat_derivative(result).tolist()


def flat_problem(args):
    """``(f, theta0)``: the loss as a function of ``concat(main_params.ravel(), extra_params.ravel())``."""
    mp, ep = args[0], args[1]
    theta0 = np.concatenate([mp.ravel(), ep.ravel()])
    k = mp.size

    def f(theta):
        return lstm_objective(np.ascontiguousarray(theta[:k].reshape(mp.shape)),
                              np.ascontiguousarray(theta[k:].reshape(ep.shape)), *args[2:])
    return f, theta0


def flat_derivative(result):
    return np.concatenate([np.ravel(g) for g in result])
