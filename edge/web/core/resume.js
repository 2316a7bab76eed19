// Reconnecting without a gap or a duplicate, shared by the widget and the
// console: the `hello` names every conversation shown with the last seq
// its timeline has, the server replays what came after (a `resumed`
// frame, then the records), and what it could not replay is paged in
// with `history` (docs/protocol.md, "Resuming").

// The `hello` of a connection. `timelines`: [conversation id, Timeline]
// pairs of the conversations to resume; those with nothing yet are left
// out (they load their history instead).
export function helloFrame(token, timelines) {
  const frame = { type: 'hello', token };
  const resume = {};
  for (const [conversationId, tl] of timelines) if (tl.maxSeq > 0) resume[String(conversationId)] = tl.maxSeq;
  if (Object.keys(resume).length) frame.resume = resume;
  return frame;
}

// The `history` request for what a `resumed` frame `f` says was missed
// beyond what the server replays (`complete: false`), or null. Asked once
// per connection: the key is the one Timeline.nextGap() uses for the hole.
export function resumedGap(f, conversationId, tl) {
  if (f.complete !== false) return null;
  const first = Number(f.first_seq);
  const after = Number(f.after) || 0;
  if (!Number.isFinite(first) || first <= 1 || tl.gapAsked.has(first)) return null;
  tl.gapAsked.add(first);
  const missing = Math.max(1, first - after - 1);
  return { type: 'history', conversation_id: conversationId, before_seq: first, limit: Math.min(100, missing) };
}
