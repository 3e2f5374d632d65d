"""kinject web app: starts the web face (``kinject.web``); every action calls the same kinject verbs as the CLI.

`python app.py [--host H] [--port P] [--allow-private-urls] [--allowed-networks CIDR ...]`. Runs live under
$KINJECT_RUNS (default ./runs). Bound to a non-loopback address the app requires $KINJECT_AUTH ("user:password",
passwords of 8 characters or more, not easily guessed; repeated failed logins lock the client address, and the name
from that address, out for a while; behind a reverse proxy name it in $KINJECT_TRUSTED_PROXIES so that the limit counts
the clients it forwards), or refuses to start unless $KINJECT_ALLOW_NO_AUTH=1. Which addresses the server may fetch is
the operator's launch setting (``kinject.settings.services.AppConfig``: flags or KINJECT_* variables), shown in the
Prepare tab and never a form field.
"""

from kinject.web.launch import main

if __name__ == "__main__":
    main()
