"""Serving: the embedded server speaking Text Generation Inference's protocol, split by layer as TGI and vLLM keep
it, and the ``serve`` verb.

- ``engine``: the models (a base with named adapters, merged models) and generation, with cancellation;
  ``sequences``: one request's decoding; ``batcher``: continuous batching; ``adapters``: where an adapter comes from
  (a folder, a run, the Hub); ``errors``: TGI's error statuses;
- ``protocol``: TGI's limits, a request's settings as the engine's, and the response shapes; ``bodies``: the
  request bodies as pydantic models;
- ``handlers``: requests turned into engine calls (queueing, streaming, cancellation); ``metrics``: the Prometheus
  counters that ``/metrics`` exposes;
- ``http``: the application (guard, error bodies) wiring ``routes``, one module per API family;
- ``server``: an application on a loopback port in a thread; ``backends``: where the app's chat goes (this server, a
  launched TGI, or an external one, through ``kinject.models.client``); ``serve``: the verb.

May import: ``kinject.models``, ``kinject.runs``, ``kinject.settings``, ``kinject.runtime``.
"""
