"""The walkthroughs behind ``python -m refimpl demo``, one module per part of the tutorial."""
