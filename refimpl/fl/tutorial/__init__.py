"""The PySyft tutorial's federated learning on workers: the model travels to the data.

Importing this package registers its instructions (``train_step``, ``take_rows``, ``model_mean``,
``model_vector``) with :mod:`refimpl.workers.ops`; a process hosting a worker must import it for workers to run them.
Everything goes through the :class:`~refimpl.workers.Worker` interface and pointers, so it runs on
:class:`~refimpl.workers.VirtualWorker` and on networked workers alike. The vmapped engine
(:mod:`refimpl.fl.client`, :mod:`refimpl.fl.server`) stays the fast path; both reach the same model.

* :mod:`~refimpl.fl.tutorial.dataset` -- :func:`federate`, :class:`FederatedDataset`, :class:`FederatedDataLoader`;
* :mod:`~refimpl.fl.tutorial.model` -- :class:`Model` (``.send``), :class:`ModelPointer` (``.train_step``, ``.get``);
* :mod:`~refimpl.fl.tutorial.averaging` -- :func:`trusted_average`, :func:`secure_average`;
* :mod:`~refimpl.fl.tutorial.loop` -- :func:`train`, :func:`test`, :func:`run`.

Example (the tutorial's loop, on 400 images):
    >>> from refimpl.fl import data
    >>> from refimpl.workers import Ledger, VirtualWorker
    >>> ledger = Ledger()
    >>> bob, alice = VirtualWorker("bob", ledger), VirtualWorker("alice", ledger)
    >>> ds = data.load("mnist-10k")
    >>> train_set = TensorDataset(ds.x_train[:400], ds.y_train[:400])
    >>> federated_train_loader = FederatedDataLoader(train_set.federate((bob, alice)), batch_size=64, shuffle=True)
    >>> model = Model.init("small", seed=0)
    >>> model = train(model, federated_train_loader, epoch=1, lr=0.1, log_interval=4)  # doctest: +ELLIPSIS
    Train Epoch: 1 [0/512 (0%)]  Loss: 2.3...
    Train Epoch: 1 [256/512 (50%)]  Loss: 2.2...
    >>> _ = test(model, ds.x_test[:1000], ds.y_test[:1000])  # doctest: +ELLIPSIS
    Test set: Average loss: ..., Accuracy: .../1000 (...%)
"""

from refimpl.fl.tutorial.averaging import secure_average, trusted_average
from refimpl.fl.tutorial.dataset import FederatedDataLoader, FederatedDataset, TensorDataset, federate
from refimpl.fl.tutorial.instructions import INSTRUCTIONS
from refimpl.fl.tutorial.loop import progress_line, run, test, test_line, train
from refimpl.fl.tutorial.model import Model, ModelPointer

__all__ = [
    "INSTRUCTIONS",
    "FederatedDataLoader",
    "FederatedDataset",
    "Model",
    "ModelPointer",
    "TensorDataset",
    "federate",
    "progress_line",
    "run",
    "secure_average",
    "test",
    "test_line",
    "train",
    "trusted_average",
]
