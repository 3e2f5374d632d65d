"""kinject's web face: the gradio app, the only place gradio is imported; every action calls the verbs the CLI calls.

``state`` holds the app's process-wide state (runs folder, operator settings, jobs, chat backend), ``views`` and
``eval_view`` the plain text and tables shown (no gradio), ``forms`` the controls built from the config dataclasses,
``words`` how a verb's message reads in the app, ``handlers``, ``job_handlers`` and ``chat`` the events, ``layout``
the tabs, ``auth`` the login, ``launch`` the operator's settings and ``main``.

The forms are built from the config dataclasses (``kinject.settings.fields.describe_fields``): each field is a control
named after it, and each handler receives the controls' values by field name (gradio's ``inputs_kwargs``) and
builds the same config objects the CLI builds. A field added to a config class appears under "Advanced settings"
without a change here.

May import: every stage and layer below it; never ``kinject.cli``.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from a self-hosted tool
