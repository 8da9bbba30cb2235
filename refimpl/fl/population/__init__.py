"""A realistic client population and the rounds production systems run over it (Bonawitz et al., 2019).

* :mod:`~refimpl.fl.population.model` -- devices: availability windows, opt-out, speed, bandwidth, CSV traces;
* :mod:`~refimpl.fl.population.orchestration` -- selection, over-selection, deadlines, dropouts by cause, clock;
* :mod:`~refimpl.fl.population.run` -- those rounds on the vmapped engine;
* :mod:`~refimpl.fl.population.secure` -- secure aggregation under the population's dropouts;
* :mod:`~refimpl.fl.population.personalize` -- local fine-tuning after training;
* :mod:`~refimpl.fl.population.cli` -- the ``train`` flags and outputs.

Submodules are imported on use: ``import refimpl.fl.population`` stays light.
"""
