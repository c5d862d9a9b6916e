from __future__ import annotations

from crm.chat.models import ChatVisitor, ChatVisitorPageView, hash_token
from tests.chat.api.conftest import SHOP, PublicApi, assert_error, new_visitor
from tests.chat.conftest import ChatWorld


class IdentifyTests:
    def test_it_creates_a_visitor_with_a_64_char_token(self, world: ChatWorld, public: PublicApi):
        response = public.identify(origin=SHOP, HTTP_USER_AGENT="Widget/1")
        assert response.status_code == 201, response.content
        data = response.json()
        token = data["visitor_token"]
        assert isinstance(token, str) and len(token) == 64
        stored = ChatVisitor.objects.get(external_id=data["visitor"]["id"])
        assert stored.widget_id == world.widget.pk
        assert stored.visitor_token == hash_token(token)  # only the digest is kept
        assert stored.user_agent == "Widget/1"
        assert data["visitor"] == {"id": str(stored.external_id), "name": "", "email": ""}
        assert data["widget"]["name"] == "Main site" and data["widget"]["max_body"] == 5000
        assert data["conversation"] is None and data["messages"] == []
        assert ChatVisitor.objects.count() == 3

    def test_it_returns_the_same_visitor_for_its_token_without_a_new_token(
        self, world: ChatWorld, public: PublicApi
    ):
        response = public.identify(token=world.token)
        assert response.status_code == 200, response.content
        data = response.json()
        assert data["visitor_token"] is None
        assert data["visitor"]["id"] == str(world.visitor.external_id)
        assert ChatVisitor.objects.count() == 2

    def test_it_records_the_page_it_is_given(self, world: ChatWorld, public: PublicApi):
        page = {"url": f"{SHOP}/pricing", "title": "Pricing", "referrer": "https://search.example/"}
        response = public.identify({"page": page}, origin=SHOP)
        assert response.status_code == 201, response.content
        visitor = ChatVisitor.objects.get(external_id=response.json()["visitor"]["id"])
        views = list(ChatVisitorPageView.objects.filter(visitor=visitor).values())
        assert [(v["url"], v["title"], v["referrer"]) for v in views] == [
            (f"{SHOP}/pricing", "Pricing", "https://search.example/")
        ]
        assert visitor.current_url == f"{SHOP}/pricing"

    def test_it_records_the_page_of_a_returning_visitor(self, world: ChatWorld, public: PublicApi):
        response = public.identify({"page": {"url": f"{SHOP}/a"}}, token=world.token)
        assert response.status_code == 200, response.content
        assert list(world.visitor.page_views.values_list("url", flat=True)) == [f"{SHOP}/a"]

    def test_it_returns_the_conversation_and_its_messages_once_one_exists(
        self, world: ChatWorld, public: PublicApi
    ):
        assert public.identify(token=world.token).json()["conversation"] is None
        conv = world.conversation()
        world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="Hi")
        world.service.send_agent_message(conversation=conv, agent=world.owner, body="Hello!")
        data = public.identify(token=world.token).json()
        assert data["conversation"]["id"] == str(conv.external_id)
        assert data["conversation"]["chat_id"] == conv.chat_id
        assert data["conversation"]["unread"] == 1
        bodies = [(m["seq"], m["sender_type"], m["body"]) for m in data["messages"]]
        # Seq 2 is the "Olivia joined the chat." system line of the first agent reply.
        assert bodies[0] == (1, "visitor", "Hi") and bodies[-1] == (3, "user", "Hello!")
        assert [m["seq"] for m in data["messages"]] == sorted(m["seq"] for m in data["messages"])

    def test_it_never_returns_internal_system_messages(self, world: ChatWorld, public: PublicApi):
        conv = world.conversation()
        world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="Hi")
        world.service.send_system_message(
            conversation=conv, body="Agents only: VIP customer", internal=True
        )
        world.service.send_system_message(conversation=conv, body="Public note")
        response = public.identify(token=world.token)
        messages = response.json()["messages"]
        assert [m["body"] for m in messages] == ["Hi", "Public note"]
        assert all(m["internal"] is False for m in messages)
        assert b"VIP customer" not in response.content

    def test_it_refuses_an_unknown_token_instead_of_creating_a_visitor(
        self, world: ChatWorld, public: PublicApi
    ):
        assert_error(public.identify(token="z" * 64), 401, "invalid_token")
        assert ChatVisitor.objects.count() == 2

    def test_it_writes_no_visitor_when_the_page_is_refused(
        self, world: ChatWorld, public: PublicApi
    ):
        # The token of a visitor created here would never reach the caller: an orphan row.
        assert_error(public.identify({"page": {"url": "javascript:alert(1)"}}), 422)
        assert_error(public.identify({"page": {"url": "https://elsewhere.example/"}}), 403)
        assert ChatVisitor.objects.count() == 2
        assert not ChatVisitorPageView.objects.exists()

    def test_it_needs_no_cookie_or_csrf_token_and_sets_no_cookie(self, public: PublicApi):
        response = public.identify(origin=SHOP)
        assert response.status_code == 201
        assert not response.cookies
        assert "Set-Cookie" not in response.headers


class UpdateVisitorTests:
    def test_it_sets_name_and_email(self, world: ChatWorld, public: PublicApi):
        response = public.call(
            "patch",
            "/visitor",
            {"name": " Ann Lee ", "email": "Ann@Example.COM"},
            token=world.token,
        )
        assert response.status_code == 200, response.content
        assert response.json() == {
            "id": str(world.visitor.external_id),
            "name": "Ann Lee",
            "email": "ann@example.com",
        }
        stored = ChatVisitor.objects.get(pk=world.visitor.pk)
        assert (stored.name, stored.email) == ("Ann Lee", "ann@example.com")

    def test_it_keeps_old_values_for_missing_or_blank_fields(
        self, world: ChatWorld, public: PublicApi
    ):
        public.call("patch", "/visitor", {"name": "Ann", "email": "a@x.io"}, token=world.token)
        response = public.call("patch", "/visitor", {"name": ""}, token=world.token)
        assert response.json()["name"] == "Ann" and response.json()["email"] == "a@x.io"

    def test_it_rejects_an_invalid_email_with_field_errors_and_changes_nothing(
        self, world: ChatWorld, public: PublicApi
    ):
        response = public.call(
            "patch", "/visitor", {"name": "Ann", "email": "not-an-email"}, token=world.token
        )
        error = assert_error(response, 422)
        assert list(error["fields"]) == ["email"] and error["fields"]["email"]
        stored = ChatVisitor.objects.get(pk=world.visitor.pk)
        assert (stored.name, stored.email) == ("", "")

    def test_it_rejects_an_over_long_name(self, world: ChatWorld, public: PublicApi):
        error = assert_error(
            public.call("patch", "/visitor", {"name": "A" * 256}, token=world.token), 422
        )
        assert "name" in error["fields"]

    def test_it_validates_ownership(self, world: ChatWorld, public: PublicApi):
        intruder, intruder_token = new_visitor(world.widget)
        response = public.call("patch", "/visitor", {"name": "Mallory"}, token=intruder_token)
        assert response.json()["id"] == str(intruder.external_id)
        assert ChatVisitor.objects.get(pk=world.visitor.pk).name == ""
        assert_error(public.call("patch", "/visitor", {"name": "M"}), 401, "missing_token")
