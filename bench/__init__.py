"""Saksi's benchmark suite: ``python -m bench [--scale S]`` writes bench/RESULTS.md.

Every figure is a ratio to a baseline measured in the same run (min / median / max
over at least three runs), because the machine is shared and noisy. One module per
measurement: ``corpus`` (the signed national scenario, cached on disk), ``ingest``
(HTTP batch and single, ``Ledger.submit``), ``rebuild``, ``audit`` (time and peak
memory), ``proofs``, ``ed25519`` (cryptography against PyNaCl); ``measure`` holds
the timing, machine and profile helpers and ``report`` renders the results.
"""
