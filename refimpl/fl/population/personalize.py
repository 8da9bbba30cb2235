"""Personalization after federated training: each client fine-tunes the global model for k local steps.

`personalize` measures, for every client, the accuracy of the global model on the client's own test data before
and after k steps of minibatch SGD on the client's own training data. A client's test data are
``test_size`` examples of the global test set drawn with the client's label proportions (seeded), so they follow
its distribution without taking anything from its training data. Clients are processed in chunks inside one
compiled program (``jax.lax.map``), so no per-client model is ever stacked for all clients.

Each step draws B of the client's examples uniformly (with replacement) from a key ``fold_in(fold_in(key(seed),
client), step)``: nothing here is secret, so ``jax.random`` is fine.

As the seed says, a client that personalized leaves the training population: ``train`` retires the personalized
clients from the orchestrator (`refimpl.fl.population.orchestration.Orchestrator.retire`), recorded in
``population.json``.

Outputs of ``train --personalize-steps k``: ``personalization.json`` (per-client accuracies before and after, mean
and 10th percentile) and ``personalization.png`` (their CDFs).

Example:
    >>> import numpy as np
    >>> from refimpl.fl import model
    >>> x = np.eye(4, dtype=np.float32).repeat(5, axis=0)        # 20 examples, 4 classes
    >>> y = np.arange(4).repeat(5)
    >>> p = model.init((4, 4), seed=0)
    >>> rep = personalize(p, x, y, np.arange(20).reshape(2, 10), np.array([10, 10]), x, y, steps=50,
    ...                   batch_size=5, learning_rate=1.0, test_size=20)
    >>> bool(rep.after.mean() >= rep.before.mean()), rep.before.shape
    (True, (2,))
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from refimpl.fl import model as mlp

__all__ = ["PersonalizationReport", "add_arguments", "client_test_sets", "personalize", "write_cdf_plot"]


class PersonalizationReport(NamedTuple):
    """Per-client accuracies on their own test data before and after fine-tuning (shape (K,) each)."""

    before: np.ndarray
    after: np.ndarray
    steps: int

    def summary(self) -> dict[str, float]:
        """Mean and 10th percentile before and after."""
        return {"mean_before": float(self.before.mean()), "mean_after": float(self.after.mean()),
                "p10_before": float(np.percentile(self.before, 10)), "p10_after": float(np.percentile(self.after, 10))}


def client_test_sets(index: np.ndarray, sizes: np.ndarray, y_train: np.ndarray, y_test: ArrayLike,
                     test_size: int, *, seed: int = 0) -> np.ndarray:
    """(K, test_size) indices into the test set, drawn with each client's label proportions.

    Raises:
        ValueError: test_size < 1, or a client label absent from the test set.
    """
    if test_size < 1:
        raise ValueError(f"test_size must be >= 1, got {test_size}")
    yt = np.asarray(y_test)
    classes = int(max(y_train.max(), yt.max())) + 1
    by_label = [np.flatnonzero(yt == c) for c in range(classes)]
    rng = np.random.default_rng([seed, 16, 1])
    out = np.empty((len(sizes), test_size), np.int64)
    for k, n in enumerate(sizes):
        hist = np.bincount(y_train[index[k, :n]], minlength=classes).astype(np.float64)
        if hist.sum() == 0:
            hist[:] = 1.0
        labels = rng.choice(classes, size=test_size, p=hist / hist.sum())
        for c in np.unique(labels):
            if not len(by_label[c]):
                raise ValueError(f"client {k} holds label {c}, which the test set lacks")
            pick = labels == c
            out[k, pick] = rng.choice(by_label[c], size=int(pick.sum()))
    return out


def personalize(params: dict[str, Any], x: ArrayLike, y: ArrayLike, index: np.ndarray, sizes: np.ndarray,
                x_test: ArrayLike, y_test: ArrayLike, *, steps: int, batch_size: int = 10,
                learning_rate: float = 0.05, test_size: int = 100, seed: int = 0, chunk: int = 32,
                test_index: np.ndarray | None = None) -> PersonalizationReport:
    """Fine-tunes ``params`` on every client for ``steps`` SGD steps; accuracy before and after per client.

    Args:
        params: The global model.
        x, y: Training images and labels (shared); client k owns ``index[k, :sizes[k]]``.
        index: (K, L) index rows.
        sizes: (K,) client sizes (>= 1).
        x_test, y_test: The test set the clients' test data are drawn from.
        steps: k >= 0 local steps.
        batch_size: B.
        learning_rate: SGD step size.
        test_size: Test examples per client.
        seed: Seeds the test draws and the batches.
        chunk: Clients per vmapped chunk.
        test_index: (K, T) test indices (default: `client_test_sets`).

    Raises:
        ValueError: steps < 0, batch_size < 1, learning_rate <= 0 or a client of size 0.
    """
    if steps < 0 or batch_size < 1 or not learning_rate > 0:
        raise ValueError(f"need steps >= 0, batch_size >= 1, learning_rate > 0; got {steps}, {batch_size}, "
                         f"{learning_rate}")
    sizes = np.asarray(sizes)
    if np.any(sizes < 1):
        raise ValueError(f"every client needs >= 1 example; client {int(np.argmin(sizes))} has {int(sizes.min())}")
    y_np = np.asarray(y)
    tidx = client_test_sets(index, sizes, y_np, y_test, test_size, seed=seed) if test_index is None else test_index
    xd, yd, xt, yt = (jnp.asarray(x), jnp.asarray(y_np), jnp.asarray(x_test), jnp.asarray(y_test))
    grad = jax.grad(mlp.loss)
    base = jax.random.PRNGKey(seed)

    def one(args):
        row, n, cid, trow = args
        acc0 = mlp.accuracy(params, xt[trow], yt[trow])

        def step(p, s):
            key = jax.random.fold_in(jax.random.fold_in(base, cid), s)
            rows = row[jax.random.randint(key, (batch_size,), 0, n)]
            g = grad(p, xd[rows], yd[rows])
            return jax.tree_util.tree_map(lambda a, b: a - learning_rate * b, p, g), None

        tuned, _ = jax.lax.scan(step, params, jnp.arange(steps))
        return acc0, mlp.accuracy(tuned, xt[trow], yt[trow])

    run = jax.jit(lambda a: jax.lax.map(one, a, batch_size=chunk))
    before, after = run((jnp.asarray(index), jnp.asarray(sizes), jnp.arange(len(sizes)), jnp.asarray(tidx)))
    return PersonalizationReport(np.asarray(before, np.float64), np.asarray(after, np.float64), steps)


def write_cdf_plot(report: PersonalizationReport, path: Path, title: str) -> None:
    """CDFs of per-client accuracy before and after fine-tuning."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    for values, label in ((report.before, "global model"), (report.after, f"after {report.steps} local steps")):
        v = np.sort(values)
        ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", label=f"{label} (mean {v.mean():.3f})")
    ax.set(xlabel="per-client test accuracy", ylabel="fraction of clients", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.savefig(path, dpi=110)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The personalization flags of ``train``."""
    g = parser.add_argument_group("personalization after training (refimpl.fl.population.personalize)")
    g.add_argument("--personalize-steps", type=int, default=0,
                   help="after training, each client fine-tunes for this many local SGD steps (0: off)")
    g.add_argument("--personalize-lr", type=float, default=0.05, help="fine-tuning learning rate")
    g.add_argument("--personalize-test-size", type=int, default=100, help="test examples per client")


def check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuses bad personalization flags."""
    if args.personalize_steps < 0:
        parser.error(f"--personalize-steps must be >= 0, got {args.personalize_steps}")
    if not args.personalize_lr > 0:
        parser.error(f"--personalize-lr must be > 0, got {args.personalize_lr}")
    if args.personalize_test_size < 1:
        parser.error(f"--personalize-test-size must be >= 1, got {args.personalize_test_size}")


def run_from_args(run: Any) -> PersonalizationReport:
    """Personalizes every client from the run's final checkpoint; writes the JSON and plot; retires the clients."""
    from refimpl.fl import checkpoint

    args = run.args
    state, _ = checkpoint.load(run.checkpoint_path, run.fedavg.optimizer)
    data, ds = run.client_data, run.dataset
    rep = personalize(state.params, ds.x_train, ds.y_train, np.asarray(data.index), np.asarray(data.sizes),
                      ds.x_test, ds.y_test, steps=args.personalize_steps, batch_size=args.batch_size,
                      learning_rate=args.personalize_lr, test_size=args.personalize_test_size, seed=args.seed)
    doc = {"steps": rep.steps, **rep.summary(), "before": rep.before.tolist(), "after": rep.after.tolist()}
    (run.out / "personalization.json").write_text(json.dumps(doc) + "\n")
    if args.plot:
        write_cdf_plot(rep, run.out / "personalization.png", f"{args.dataset}, {args.partition}")
    if run.population is not None:  # personalized clients leave the training population
        run.population.orchestrator.retire(np.arange(len(rep.before)))
    s = rep.summary()
    print(f"personalization ({rep.steps} steps): mean accuracy {s['mean_before']:.4f} -> {s['mean_after']:.4f}, "
          f"10th percentile {s['p10_before']:.4f} -> {s['p10_after']:.4f}")
    return rep
