"""Create what the realtime benchmarks drive, through the product's own services.

Run with the product's Python and environment after ``crm manage migrate``::

    python -m bench.setup_world --visitors 1101 --assign 101

Creates one widget (allowed origin ``https://shop.example``), one Owner agent,
``--visitors`` visitors with one open conversation each (the first ``--assign``
assigned to the agent), and logs the agent in with Django's test client. Prints one
JSON line: the widget key, the origin, the agent's session cookie and, per visitor,
its plain token and conversation id.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets

ORIGIN = "https://shop.example"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=101)
    parser.add_argument("--assign", type=int, default=101)
    opts = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    import django

    django.setup()
    from django.test import Client

    from crm.chat.services import chat_service
    from crm.core.services import create_agent

    agent = create_agent(
        username=f"bench-{secrets.token_hex(3)}",
        password=secrets.token_urlsafe(16),
        role="Owner",
        first_name="Bench",
        validate=False,
    )
    widget = chat_service.create_widget(
        name="Bench widget", welcome_message="Hi! How can we help?", allowed_origins=[ORIGIN]
    )
    visitors = []
    for i in range(opts.visitors):
        visitor, token = chat_service.identify_visitor(
            widget=widget, token=None, ip_address="127.0.0.1", user_agent="bench"
        )
        conversation = chat_service.open_conversation(visitor=visitor)
        if i < opts.assign:
            chat_service.assign_conversation(conversation=conversation, agent=agent, by=agent)
        visitors.append({"token": token, "conversation": str(conversation.external_id)})

    client = Client()
    client.force_login(agent)
    print(
        json.dumps(
            {
                "key": widget.public_key,
                "origin": ORIGIN,
                "cookie": f"sessionid={client.cookies['sessionid'].value}",
                "agent_id": agent.pk,
                "visitors": visitors,
            }
        )
    )


if __name__ == "__main__":
    main()
