"""The node's local HTTP API: the application and its routes (``app``), one module per
group of endpoints (``tracing``, ``details``, ``psi``, ``proof``), reading request bodies
within their limits (``input``), ``/metrics`` (``metrics``) and the OpenAPI document.

Layer: above the feature packages. The only package that knows HTTP: the services below
raise the project's refusals and ``api`` maps them to statuses. May import the feature
packages and everything below them; never ``client``, ``ops``, ``testing``, ``commands``
or ``node.daemon``.
"""
