"""The embedded server speaking Text Generation Inference's protocol, split by layer as TGI and vLLM keep it.

- ``engine``: the models (a base with named adapters, merged models) and generation, with cancellation;
- ``protocol``: TGI's request bodies, their validation and limits, and the response shapes;
- ``metrics``: the Prometheus counters that ``/metrics`` exposes;
- ``http``: the routes only, which turn requests into engine calls;
- ``client``: the one client for TGI/OpenAI-compatible servers (chat, runtime adapter loading).
"""
