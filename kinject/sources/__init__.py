"""Sources (stage: sources): URLs fetched through the SSRF guard (``fetch``, ``fetch_guard``) and local files read,
their main text extracted (``extract``) into one ``Source`` row per input.

May import: ``kinject.settings``, ``kinject.runtime``.
"""
