//! What an admin does to the running system, shared by the command line
//! (`switchboard queue …`, `switchboard broadcast`) and the edge's admin
//! HTTP API: the queue as the routers will serve it, moving a waiting
//! conversation ahead or to an agent, and notices to everyone online.
//!
//! Queue changes are compare-and-set writes on the routing state that
//! every router picks up at once; a conversation that stopped waiting in
//! between is refused, never changed.

use futures::TryStreamExt;
use switchboard_protocol::ids::ConversationId;
use switchboard_protocol::payloads::{
    encode, AgentAccount, ConversationState, ConversationStatus, Notice, Participant,
};
use switchboard_protocol::subjects;

use crate::kv::{self, Decision};
use crate::{accounts, Backbone, BusError};

/// The priority `queue prioritize` gives when none is named.
pub const DEFAULT_PRIORITY: i32 = 10;
/// The priority of a conversation given to a named agent: ahead of
/// everything else.
pub const FORCED_PRIORITY: i32 = 1_000;
/// The longest notice, in characters.
pub const MAX_NOTICE_CHARS: usize = 4_000;

/// An admin action was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("conversation {0} is not waiting in the queue")]
    NotWaiting(ConversationId),
    #[error("no agent with login {0:?}")]
    UnknownAgent(String),
    #[error("the notice is empty")]
    EmptyNotice,
    #[error("the notice is longer than {MAX_NOTICE_CHARS} characters")]
    NoticeTooLong,
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Who a notice is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Agents,
    Visitors,
}

impl Audience {
    /// `agents` or `visitors`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Audience::Agents => "agents",
            Audience::Visitors => "visitors",
        }
    }
}

/// Every waiting conversation, in the order the routers serve them.
///
/// # Errors
/// NATS errors, or a state this version cannot decode.
pub async fn waiting(backbone: &Backbone) -> Result<Vec<ConversationState>, AdminError> {
    let keys: Vec<String> = backbone
        .conversations
        .keys()
        .await
        .map_err(|e| BusError::nats("list conversations", e))?
        .try_collect()
        .await
        .map_err(|e| BusError::nats("list conversations", e))?;
    let mut queued = Vec::new();
    for key in keys {
        if let Some(state) = kv::get::<ConversationState>(&backbone.conversations, &key).await? {
            if state.value.status == ConversationStatus::Queued {
                queued.push(state.value);
            }
        }
    }
    queued.sort_by(|a, b| a.queue_order(b));
    Ok(queued)
}

/// Moves a waiting conversation ahead: higher `priority` goes first.
///
/// # Errors
/// [`AdminError::NotWaiting`] for a conversation that is not (or no
/// longer) waiting; NATS errors.
pub async fn prioritize(
    backbone: &Backbone,
    id: &ConversationId,
    priority: i32,
) -> Result<ConversationState, AdminError> {
    change(backbone, id, |state| state.priority = priority).await
}

/// Gives a waiting conversation to the agent with `login` as soon as they
/// have a free slot, ahead of everything else.
///
/// # Errors
/// [`AdminError::UnknownAgent`], [`AdminError::NotWaiting`]; NATS errors.
pub async fn assign(
    backbone: &Backbone,
    id: &ConversationId,
    login: &str,
) -> Result<(ConversationState, AgentAccount), AdminError> {
    let account = accounts::find_by_login(backbone, login)
        .await?
        .ok_or_else(|| AdminError::UnknownAgent(login.to_owned()))?;
    let state = change(backbone, id, |state| {
        state.target_agent = Some(account.id.clone());
        state.target_only = true;
        state.exclude_agent = None;
        state.priority = FORCED_PRIORITY;
    })
    .await?;
    Ok((state, account))
}

/// Sends a notice to every online agent or visitor (not stored: whoever
/// is not connected now never sees it). The text is trimmed.
///
/// # Errors
/// [`AdminError::EmptyNotice`], [`AdminError::NoticeTooLong`]; NATS errors.
pub async fn broadcast(
    backbone: &Backbone,
    to: Audience,
    text: &str,
) -> Result<Notice, AdminError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AdminError::EmptyNotice);
    }
    if text.chars().count() > MAX_NOTICE_CHARS {
        return Err(AdminError::NoticeTooLong);
    }
    let subject = match to {
        Audience::Agents => subjects::NOTICE_AGENTS,
        Audience::Visitors => subjects::NOTICE_VISITORS,
    };
    let notice = Notice {
        text: text.to_owned(),
        sender: Participant::system("admin"),
    };
    let payload = encode(&notice).map_err(|e| BusError::decode("notice", e))?;
    backbone
        .client
        .publish(subject, payload.into())
        .await
        .map_err(|e| BusError::nats("publish notice", e))?;
    backbone
        .client
        .flush()
        .await
        .map_err(|e| BusError::nats("publish notice", e))?;
    Ok(notice)
}

/// Changes a waiting conversation by compare-and-set; refuses one that is
/// not waiting. Returns the state written.
async fn change(
    backbone: &Backbone,
    id: &ConversationId,
    edit: impl Fn(&mut ConversationState),
) -> Result<ConversationState, AdminError> {
    let written = kv::cas(
        &backbone.conversations,
        id.as_str(),
        |current: Option<&ConversationState>| match current {
            Some(state) if state.status == ConversationStatus::Queued => {
                let mut state = state.clone();
                edit(&mut state);
                Decision::Write(state.clone(), Some(state))
            }
            _ => Decision::Keep(None),
        },
    )
    .await?;
    written.ok_or_else(|| AdminError::NotWaiting(id.clone()))
}
