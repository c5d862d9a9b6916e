"""The conversation actions of the inbox, as one table: who may, what runs, what it says.

Every action is a POST to ``crm/chat/<id>/<name>/`` by an agent who may reply;
some need one more permission (``ACTIONS``). Each runs one ChatService call; a
refusal (a missing permission, a rule of the service, an invalid value) becomes
a friendly flash message, never an error page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from crm.chat import selectors
from crm.chat.models import ChatConversation
from crm.chat.payloads import agent_display_name
from crm.chat.services import ChatError, chat_service
from crm.chat.views.inbox import get_conversation_for_agent, reply_chat
from crm.typing import AuthedHttpRequest

# What an action answers: a flash message (then back to the chat), or a response.
Outcome = str | HttpResponse


def _assign(request: AuthedHttpRequest, conv: ChatConversation) -> Outcome:
    target = request.POST.get("agent", "")
    agent = None
    if target == "me":
        agent = request.user
    elif target:
        # Only someone who can open chats may own one: a chat assigned to a user
        # without chat access would vanish for everyone but managers.
        agent = selectors.chat_agents().filter(pk=int(target)).first()
        if agent is None:
            raise ChatError("Choose an active agent.")
    chat_service.assign_conversation(conversation=conv, agent=agent, by=request.user)
    return f"Assigned to {agent_display_name(agent)}." if agent else "Unassigned."


def _pending(request: AuthedHttpRequest, conv: ChatConversation) -> Outcome:
    chat_service.mark_pending(conversation=conv, by=request.user)
    return f"Chat {conv.chat_id} is pending."


def _close(request: AuthedHttpRequest, conv: ChatConversation) -> Outcome:
    chat_service.close_conversation(conversation=conv, by=request.user)
    return f"Chat {conv.chat_id} closed."


def _reopen(request: AuthedHttpRequest, conv: ChatConversation) -> Outcome:
    chat_service.reopen_conversation(conversation=conv, by=request.user)
    return f"Chat {conv.chat_id} reopened."


def _convert(request: AuthedHttpRequest, conv: ChatConversation) -> Outcome:
    lead = chat_service.convert_to_lead(conversation=conv, by=request.user)
    messages.success(request, f"Converted to lead “{lead.title}”.")
    return redirect(lead.get_absolute_url())


def _delete(request: AuthedHttpRequest, conv: ChatConversation) -> Outcome:
    chat_service.delete_conversation(conversation=conv, by=request.user)
    messages.success(request, f"Chat {conv.chat_id} deleted. Restore it from Deleted.")
    return redirect("crm-chat-index")


def _restore(request: AuthedHttpRequest, conv: ChatConversation) -> Outcome:
    chat_service.restore_conversation(conversation=conv, by=request.user)
    return f"Chat {conv.chat_id} restored."


def _promote(request: AuthedHttpRequest, conv: ChatConversation) -> Outcome:
    person = chat_service.promote_visitor_to_person(visitor=conv.visitor, by=request.user)
    return f"Visitor linked to {person.name}."


@dataclass(frozen=True)
class Action:
    run: Callable[[AuthedHttpRequest, ChatConversation], Outcome]
    # Needed on top of replying to chats, with the message shown to those without it.
    permission: str | None = None
    refusal: str = ""


ACTIONS: dict[str, Action] = {
    "assign": Action(_assign),
    "pending": Action(_pending),
    "close": Action(_close),
    "reopen": Action(_reopen),
    "convert": Action(_convert, "crm_core.add_lead", "You may not create leads."),
    "delete": Action(_delete, "crm_chat.delete_chat", "You may not delete chats."),
    "restore": Action(_restore, "crm_chat.delete_chat", "You may not delete chats."),
    "promote": Action(_promote, "crm_core.add_person", "You may not create people."),
}


@login_required
@reply_chat
@require_POST
def action(request: AuthedHttpRequest, external_id: UUID, name: str) -> HttpResponse:
    """Run one action of ``ACTIONS`` on a conversation the agent may open."""
    conv = get_conversation_for_agent(request, external_id)
    spec = ACTIONS.get(name)
    if spec is None:
        raise Http404("Unknown action.")
    try:
        if spec.permission and not request.user.has_perm(spec.permission):
            raise ChatError(spec.refusal)
        outcome = spec.run(request, conv)
    except (ChatError, ValueError) as exc:
        messages.error(request, getattr(exc, "message", "That value is not valid."))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        if isinstance(outcome, HttpResponse):
            return outcome
        messages.success(request, outcome)
    if selectors.conversation_get(agent=request.user, external_id=conv.external_id) is None:
        # Handing the chat to a colleague can take it out of this agent's sight.
        return redirect("crm-chat-index")
    return redirect(conv.get_absolute_url())
