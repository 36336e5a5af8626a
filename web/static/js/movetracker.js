// MoveTracker holds the one node session a participant is using and moves
// it make-before-break: when the node says "move" (a policy change, a node
// draining), the participant joins again through the control plane,
// naming the session it replaces, connects to the new node, waits until the
// new connection carries media and only then closes the old one. If the
// move fails, the old session stays.

export const MOVE_READY_TIMEOUT_MS = 10000;

export class MoveTracker {
  // join(replacesID, refused) resolves to a join answer; connect(answer)
  // to a session {id, ready: Promise, close(reason)}. refused is this
  // client's refusal of the node it is on ({code, message}) when it moves
  // by itself, else undefined.
  constructor({ join, connect, readyTimeoutMs = MOVE_READY_TIMEOUT_MS }) {
    this.join = join;
    this.connect = connect;
    this.readyTimeoutMs = readyTimeoutMs;
    this.current = null;
    this.moving = null;
  }

  adopt(session) {
    this.current = session;
    return session;
  }

  // move resolves to the new session once it is current. Concurrent calls
  // share one move.
  move(reason, refused) {
    this.moving ??= this.doMove(reason, refused).finally(() => {
      this.moving = null;
    });
    return this.moving;
  }

  async doMove(reason, refused) {
    const old = this.current;
    const answer = await this.join(old?.id ?? '', refused);
    const next = await this.connect(answer, reason);
    let timer;
    const timeout = new Promise((resolve) => {
      // A new session that never shows media still wins after the timeout:
      // the old node is about to drop us anyway.
      timer = setTimeout(resolve, this.readyTimeoutMs);
    });
    try {
      await Promise.race([next.ready, timeout]);
    } catch (err) {
      next.close('failed');
      throw err;
    } finally {
      clearTimeout(timer);
    }
    this.current = next;
    old?.close('moved');
    return next;
  }
}
