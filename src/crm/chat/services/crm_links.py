"""Where a chat meets the CRM core: promote a visitor to a person, convert a chat to a lead.

Rules that live here: promotion links the visitor to the person who already
has their email address, and creates a person only when none has (a visitor
with neither name nor email can't be promoted); promoting twice returns the
linked person. A chat converts to at most one lead (source "chat", titled with
who and which chat), with the public transcript as its note. The visitor row is
locked before the person is looked up, so two agents promoting at once create
one person, and each conversation gets its internal system line through the
sequencing core under its own row lock. The person, the lead and its note are
created by ``crm.core.services``, with the same rules as on the CRM's own pages.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.utils import timezone

from crm.chat.models import ChatConversation, ChatMessage, ChatVisitor
from crm.chat.payloads import sender_names
from crm.chat.services.errors import AlreadyConverted, NotAllowed
from crm.chat.services.messages import append_message
from crm.chat.services.store import lock_conversation, sync_conversation
from crm.core import selectors as core_selectors
from crm.core import services as core_services
from crm.core.models import Lead, Person
from crm.core.writes import write_transaction


def promote_visitor_to_person(*, visitor: ChatVisitor, by: User | None) -> Person:
    """Link the visitor to the person with their email, or create that person.

    Promoting twice returns the already linked person.
    """
    with write_transaction():
        locked = ChatVisitor.objects.select_for_update().get(pk=visitor.pk)
        if locked.person_id:
            person = Person.objects.get(pk=locked.person_id)
        else:
            person = _find_or_create_person(locked, by)
            ChatVisitor.objects.filter(pk=locked.pk).update(person=person)
            for conv in locked.conversations.all():
                append_message(
                    lock_conversation(conv),
                    sender_type=ChatMessage.SENDER_SYSTEM,
                    body=f"Visitor linked to person {person.name}.",
                    internal=True,
                )
        visitor.person = person
        visitor.person_id = person.pk
    return person


def convert_to_lead(*, conversation: ChatConversation, by: User) -> Lead:
    """Create a Lead (source chat) with the transcript as a note; refuse a second time."""
    with write_transaction():
        conv = lock_conversation(conversation)
        if conv.lead_id:
            raise AlreadyConverted(f"Chat {conv.chat_id} was already converted to a lead.")
        visitor = ChatVisitor.objects.select_for_update().get(pk=conv.visitor_id)
        person = None
        if visitor.person_id:
            person = Person.objects.get(pk=visitor.person_id)
        elif visitor.name or visitor.email:
            person = promote_visitor_to_person(visitor=visitor, by=by)
            conv = lock_conversation(conversation)  # promotion appended to it: re-read last_seq
        lead = core_services.create_lead(
            title=lead_title(conv, visitor),
            description=conv.subject,
            person=person,
            organisation=person.organisation if person else None,
            owner=by,
            source="chat",
            team=conv.widget.team,
        )
        core_services.create_note(parent=lead, content=transcript(conv, visitor), author=by)
        conv.lead = lead
        ChatConversation.objects.filter(pk=conv.pk).update(lead=lead)
        append_message(
            conv,
            sender_type=ChatMessage.SENDER_SYSTEM,
            body=f"Converted to lead “{lead.title}”.",
            internal=True,
        )
    sync_conversation(conversation, conv)
    conversation.lead = lead
    return lead


def lead_title(conv: ChatConversation, visitor: ChatVisitor) -> str:
    """ "Ann Lee (ann@example.com) · chat C1001": whom and where it came from."""
    who = " ".join(p for p in (visitor.name, visitor.email and f"({visitor.email})") if p)
    suffix = f" · chat {conv.chat_id}"
    who = who or "Chat visitor"
    max_length = Lead._meta.get_field("title").max_length
    assert max_length is not None  # a CharField always has one
    limit = max_length - len(suffix)
    if len(who) > limit:
        who = who[: limit - 1] + "…"
    return who + suffix


def transcript(conv: ChatConversation, visitor: ChatVisitor) -> str:
    """The public lines of the chat, one per message, for the lead's note."""
    messages = list(conv.messages.filter(is_internal=False).order_by("seq"))
    names = sender_names(messages, visitor=visitor)
    lines = [f"Chat {conv.chat_id} transcript"]
    for m in messages:
        stamp = timezone.localtime(m.created_at).strftime("%Y-%m-%d %H:%M")
        lines.append(f"[{stamp}] {names[m.pk]}: {m.body}")
    return "\n".join(lines)


def _find_or_create_person(visitor: ChatVisitor, by: User | None) -> Person:
    """Who has the visitor's address, else a new person named as they typed, with that address."""
    if visitor.email and (found := core_selectors.person_with_email(address=visitor.email)):
        return found
    if not (visitor.name or visitor.email):
        raise NotAllowed("Ask the visitor for a name or email before promoting them.")
    first, _, last = (visitor.name or visitor.email.split("@")[0]).partition(" ")
    return core_services.create_person(
        first_name=first[:120],
        last_name=last.strip()[:120],
        owner=by,
        team=visitor.widget.team,
        description="Created from a chat visitor.",
        email=visitor.email,
    )
