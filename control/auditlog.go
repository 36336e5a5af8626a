package control

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/store"
)

// auditor appends entries to the audit log. One goroutine (Server.Run
// starts it) does every append and export, one after another, and alone
// owns the chain heads: entries are numbered and linked in the order they
// are stored, without a lock held across the store's round trip.
type auditor struct {
	key   ed25519.PrivateKey
	store *store.Store
	now   func() time.Time
	mbox  *mailbox

	chains map[string]*chainState // owned by the goroutine serving mbox
}

type chainState struct {
	chain   *audit.Chain
	lastSeq uint64 // stream sequence of the chain's newest record
}

func newAuditor(key ed25519.PrivateKey, st *store.Store, now func() time.Time) *auditor {
	return &auditor{key: key, store: st, now: now, mbox: newMailbox(), chains: map[string]*chainState{}}
}

func (a *auditor) run(ctx context.Context) { a.mbox.run(ctx, func() {}) }

func (a *auditor) load(ctx context.Context, chain string) (*chainState, error) {
	data, seq, err := a.store.LastAudit(ctx, chain)
	if errors.Is(err, store.ErrNotFound) {
		return &chainState{chain: audit.NewChain(a.key, chain, audit.Head{})}, nil
	}
	if err != nil {
		return nil, err
	}
	var last audit.Entry
	if err := json.Unmarshal(data, &last); err != nil {
		return nil, fmt.Errorf("audit chain %q: newest entry unreadable: %w", chain, err)
	}
	return &chainState{
		chain:   audit.NewChain(a.key, chain, audit.Head{Seq: last.Seq, Hash: last.Hash}),
		lastSeq: seq,
	}, nil
}

// append seals e into its meeting's chain and stores it, on the appender
// goroutine: the only writer of the log in this process.
func (a *auditor) append(ctx context.Context, e audit.Entry) (audit.Entry, error) {
	var sealed audit.Entry
	var err error
	if cerr := a.mbox.call(ctx, func() { sealed, err = a.appendNow(ctx, e) }); cerr != nil {
		return audit.Entry{}, cerr
	}
	return sealed, err
}

func (a *auditor) appendNow(ctx context.Context, e audit.Entry) (audit.Entry, error) {
	if e.Time.IsZero() {
		e.Time = a.now().UTC()
	}
	for attempt := 0; ; attempt++ {
		cs, ok := a.chains[e.Meeting]
		if !ok {
			var err error
			if cs, err = a.load(ctx, e.Meeting); err != nil {
				return audit.Entry{}, err
			}
			a.chains[e.Meeting] = cs
		}
		sealed := cs.chain.Seal(e)
		data, err := json.Marshal(sealed)
		if err != nil {
			return audit.Entry{}, err
		}
		seq, err := a.store.AppendAudit(ctx, e.Meeting, data, cs.lastSeq)
		if err == nil {
			cs.lastSeq = seq
			return sealed, nil
		}
		// The chain in memory has advanced past what is stored: forget it
		// and reload, so the next seal links to the real head.
		delete(a.chains, e.Meeting)
		if !errors.Is(err, store.ErrConflict) || attempt >= 2 {
			return audit.Entry{}, fmt.Errorf("audit %s: %w", e.Kind, err)
		}
	}
}

// entries reads a meeting's chain, or every chain when all is true.
func (a *auditor) entries(ctx context.Context, meeting string, all bool) ([]audit.Entry, error) {
	recs, err := a.store.AuditRecords(ctx, meeting, all)
	if err != nil {
		return nil, err
	}
	out := make([]audit.Entry, 0, len(recs))
	for i, r := range recs {
		var e audit.Entry
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, fmt.Errorf("audit record %d unreadable: %w", i+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// export reads entries for an export together with the heads to sign. It
// runs on the appender goroutine between two appends, so the read sees
// every chain exactly as this writer left it; a stored chain that ends
// before the writer's own head has lost entries, and the export fails
// rather than sign the shortened chain.
func (a *auditor) export(ctx context.Context, meeting string, all bool) ([]audit.Entry, map[string]audit.Head, error) {
	var entries []audit.Entry
	var heads map[string]audit.Head
	var err error
	if cerr := a.mbox.call(ctx, func() { entries, heads, err = a.exportNow(ctx, meeting, all) }); cerr != nil {
		return nil, nil, cerr
	}
	return entries, heads, err
}

func (a *auditor) exportNow(ctx context.Context, meeting string, all bool) ([]audit.Entry, map[string]audit.Head, error) {
	entries, err := a.entries(ctx, meeting, all)
	if err != nil {
		return nil, nil, err
	}
	heads := audit.Heads(entries)
	for chain, cs := range a.chains {
		if !all && chain != meeting {
			continue
		}
		if want := cs.chain.Head(); want.Seq > 0 && heads[chain] != want {
			return nil, nil, fmt.Errorf("audit chain %q: stored head %+v differs from the writer's %+v", chain, heads[chain], want)
		}
	}
	return entries, heads, nil
}
