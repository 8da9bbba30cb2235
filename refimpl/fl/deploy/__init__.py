"""Secure aggregation deployed across processes: the lead aggregator, its share servers and the client processes.

* :mod:`~refimpl.fl.deploy.aggregator` -- the lead (round control; its docstring specifies the client protocol);
* :mod:`~refimpl.fl.deploy.share_server` -- the other S - 1 aggregators of the additive protocol;
* :mod:`~refimpl.fl.deploy.client` -- a client process: local training on its partition, masked / shared upload;
* :mod:`~refimpl.fl.deploy.cli` -- ``python -m refimpl aggregator`` and ``python -m refimpl client``.
"""
