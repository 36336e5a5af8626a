package adversary

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/httpserve"
)

// ForkedLog is a control plane that shows its clients another log than
// the one everyone else sees: a fork. It is a front before the real control
// plane (a Front, so join answers pass through it) that answers the
// transparency log's requests — the checkpoint, proofs, a meeting's
// entries, and the checkpoint in each join answer — from a copy of the
// real log with one entry edited and its chain sealed again with the
// control plane's own key. Each view verifies on its own; only a
// participant comparing checkpoints with one of the other view sees that
// they are not one log.
type ForkedLog struct {
	// URL is the fork's base URL, to give the clients to deceive.
	URL string

	upstream *apiclient.Client // with the operator token, to read the whole log
	key      ed25519.PrivateKey
	index    int64
	edit     func(*audit.Entry)
	front    *Front
	srv      *httpserve.Server
}

// StartForkedLog starts a fork of the log of the control plane at upstream
// (its base URL): entry index is changed by edit in what the fork's
// clients are shown. operator is the deployment's operator token, key the
// control plane's private key. Close stops it.
func StartForkedLog(upstream, operator string, key ed25519.PrivateKey, index int64, edit func(*audit.Entry)) (*ForkedLog, error) {
	front, err := StartFront(upstream)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(front.URL)
	if err != nil {
		return nil, errors.Join(err, front.Close())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, errors.Join(err, front.Close())
	}
	f := &ForkedLog{URL: "http://" + ln.Addr().String(), upstream: apiclient.New(upstream, nil).WithBearer(operator),
		key: key, index: index, edit: edit, front: front}
	front.SetJoinEdit(f.editJoin)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathAuditCheckpoint, f.checkpoint)
	mux.HandleFunc("GET "+api.PathAuditProof, f.proof)
	mux.HandleFunc("GET "+api.PathAuditConsistency, f.consistency)
	mux.HandleFunc("GET "+api.PathAuditEntries, f.entries)
	mux.Handle("/", &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(u); r.Out.Host = u.Host },
		FlushInterval: -1,
	})
	f.srv = httpserve.New(ln, httpserve.Config{Handler: mux})
	go func() { _ = f.srv.Serve() }()
	return f, nil
}

// Close stops the fork.
func (f *ForkedLog) Close() error { return errors.Join(f.srv.Close(), f.front.Close()) }

// forkView is the forked log as it stands: its entries, tree and signed
// checkpoint.
type forkView struct {
	entries []audit.Entry
	tree    *audit.Tree
	signed  []byte
}

// view reads the whole real log and makes the fork of it.
func (f *ForkedLog) view(ctx context.Context) (*forkView, error) {
	cfg, err := f.upstream.Config(ctx)
	if err != nil {
		return nil, err
	}
	origin, _, _ := strings.Cut(cfg.AuditVerifierKey, "+")
	signer, err := audit.NewSigner(origin, f.key)
	if err != nil {
		return nil, err
	}
	var entries []audit.Entry
	for start := int64(0); ; {
		page, err := f.upstream.AuditEntries(ctx, "", start, 0)
		if err != nil {
			return nil, err
		}
		entries = append(entries, page.Entries...)
		if !page.More {
			break
		}
		start = page.Next
	}
	if f.index < int64(len(entries)) {
		resealFrom(f.key, entries, f.index, f.edit)
	}
	v := &forkView{entries: entries, tree: &audit.Tree{}}
	for i := range entries {
		leaf, err := audit.LeafData(&entries[i])
		if err != nil {
			return nil, err
		}
		v.tree.Append(leaf)
	}
	root, err := v.tree.Root(v.tree.Size())
	if err != nil {
		return nil, err
	}
	v.signed, err = audit.SignCheckpoint(signer, audit.Checkpoint{Origin: origin, Size: v.tree.Size(), Root: root})
	return v, err
}

// editJoin gives a join answer the fork's checkpoint: the join's own
// entry is in the real log, so in the fork too.
func (f *ForkedLog) editJoin(_ string, jr *api.JoinResponse) {
	v, err := f.view(context.Background())
	if err != nil {
		return
	}
	jr.Audit.Checkpoint = string(v.signed)
}

func (f *ForkedLog) serve(w http.ResponseWriter, r *http.Request, answer func(*forkView) (any, error)) {
	v, err := f.view(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out, err := answer(v)
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(api.Error{Code: "bad_request", Message: err.Error()})
		return
	}
	if b, ok := out.([]byte); ok {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(b)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (f *ForkedLog) checkpoint(w http.ResponseWriter, r *http.Request) {
	f.serve(w, r, func(v *forkView) (any, error) { return v.signed, nil })
}

func (f *ForkedLog) proof(w http.ResponseWriter, r *http.Request) {
	f.serve(w, r, func(v *forkView) (any, error) {
		index, size, err := twoNumbers(r, "index", "size")
		if err != nil {
			return nil, err
		}
		p, err := v.tree.ProveInclusion(index, size)
		return api.InclusionProof{Index: index, Size: size, Proof: p}, err
	})
}

func (f *ForkedLog) consistency(w http.ResponseWriter, r *http.Request) {
	f.serve(w, r, func(v *forkView) (any, error) {
		from, to, err := twoNumbers(r, "from", "to")
		if err != nil {
			return nil, err
		}
		p, err := v.tree.ProveConsistency(from, to)
		return api.ConsistencyProof{From: from, To: to, Proof: p}, err
	})
}

func (f *ForkedLog) entries(w http.ResponseWriter, r *http.Request) {
	f.serve(w, r, func(v *forkView) (any, error) {
		start, err := strconv.ParseInt(r.URL.Query().Get("start"), 10, 64)
		if err != nil {
			start = 0
		}
		meeting := r.URL.Query().Get("meeting")
		page := api.AuditPage{Entries: []audit.Entry{}, Size: v.tree.Size(), Next: v.tree.Size()}
		for _, e := range v.entries {
			if e.Index >= start && e.Meeting == meeting {
				page.Entries = append(page.Entries, e)
			}
		}
		return page, nil
	})
}

func twoNumbers(r *http.Request, a, b string) (int64, int64, error) {
	x, err := strconv.ParseInt(r.URL.Query().Get(a), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", a, err)
	}
	y, err := strconv.ParseInt(r.URL.Query().Get(b), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", b, err)
	}
	return x, y, nil
}
