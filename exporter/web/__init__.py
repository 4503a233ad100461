"""The web side: routes, the HTTP server, TLS and basic auth, negotiation, the pages.

`app` routes each request; `server` serves it (uvicorn's protocol, hardened); `auth`
reads the web config (TLS, basic auth); `negotiate` picks the format; the landing page
and the debug page are rendered here and nowhere below. It may import every layer but
the command line.
"""
