"""The auditor's web dashboard, served by the API's own FastAPI app at ``/``.

``pages`` (the router) reads through the same runtime as ``/v1``; ``render``
holds the Jinja2 environment; ``reads`` the dashboard's own SQL over the
projection tables; ``charts`` draws inline SVG; ``i18n`` holds the Indonesian
and English words. Templates live in ``templates/``, the stylesheet in ``static/``.
"""
