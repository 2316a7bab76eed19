// One conversation's elements in `seq` order, at most one per `seq`, and
// the holes between them. Shared by the widget and the console.
//
// Elements without a seq (messages still sending, notices) stay after the
// seq'd ones.

export class Timeline {
  constructor(root) {
    this.root = root;
    this.bySeq = new Map();
    this.maxSeq = 0;
    this.minSeq = Infinity;
    this.gapAsked = new Set();
  }

  has(seq) {
    return this.bySeq.has(seq);
  }

  insert(node, seq) {
    node.dataset.seq = String(seq);
    this.bySeq.set(seq, node);
    // Walk back from the end to the last element with a smaller seq.
    let prev = this.root.lastElementChild;
    while (prev && (prev === node || prev.dataset.seq === undefined || Number(prev.dataset.seq) > seq)) {
      prev = prev.previousElementSibling;
    }
    this.root.insertBefore(node, prev ? prev.nextElementSibling : this.root.firstElementChild);
    if (seq > this.maxSeq) this.maxSeq = seq;
    if (seq < this.minSeq) this.minSeq = seq;
  }

  // The highest hole between the oldest and newest known seq that has not
  // been asked for yet on this connection, as a `history` request
  // (`{before_seq, limit}`), or null.
  nextGap() {
    for (let s = this.maxSeq - 1; s > this.minSeq; s--) {
      if (this.bySeq.has(s)) continue;
      const hi = s;
      let lo = s;
      while (lo - 1 > this.minSeq && !this.bySeq.has(lo - 1)) lo--;
      const key = hi + 1;
      if (!this.gapAsked.has(key)) {
        this.gapAsked.add(key);
        return { before_seq: key, limit: Math.min(100, hi - lo + 1) };
      }
      s = lo;
    }
    return null;
  }
}
