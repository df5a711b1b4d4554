"""Helpers for testing code that uses walship, and stores written for it. Not imported by
``import walship``.

* :mod:`walship.testing.faults`: fault injection (a store wrapper that fails chosen calls).
* :mod:`walship.testing.store_contract`: the conformance suite every segment store must pass
  (it imports pytest).
"""
