"""The node's local HTTP API (FastAPI on Starlette, served by Hypercorn on trio): the
application and its routes (``app``), one module per group of endpoints (``tracing``,
``details``, ``psi``, ``proof``), the request and response bodies as pydantic models
(``models``, ``models_tracing``, ``models_psi``) and their field types (``fields``),
reading request bodies within their limits (``input``), who may call what (``auth``:
bearer tokens of the member's users and the one route -> roles table), refusals as
HTTP answers (``errors``), ``/metrics`` (``metrics``), the OpenAPI document generated
from the models (``document``) and the investigator's console, a static web page at
``/console/`` whose data all comes from the routes above (``console``, its files in
``console_assets``).

Layer: above the feature packages. The only package that knows HTTP: the services below
raise the project's refusals and ``api`` maps them to statuses. May import the feature
packages and everything below them; never ``client``, ``ops``, ``testing``, ``commands``
or ``node.daemon``.
"""
