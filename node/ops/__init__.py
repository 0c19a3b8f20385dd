"""Running consortia of real node processes: starting and stopping them (``processes``),
choosing free ports (``ports``), the consortium benchmark and its HTTP driver
(``bench``, ``bench_http``), the demo investigation and its story (``demo``,
``scenario``) and setting members up for PSI runs (``psi_setup``).

Layer: above ``client`` and ``node.daemon``. May import them and everything below; never
``testing`` or ``commands``.
"""
