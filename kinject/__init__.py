"""kinject: teach an already chat-tuned LLM new facts from a handful of web pages, without it forgetting how to chat.

Pipeline stages, one module each: sources → corpus → blocks → train → evaluate → publish; see README.md.
"""

__version__ = "0.1.0"
