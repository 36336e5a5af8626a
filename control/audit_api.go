package control

import (
	"net/http"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/oakmeet/oakmeet/api"
)

// Codes of the transparency log's endpoints (docs/API.md "Audit log").
// Their answers are 400: the numbers asked for name no proof this log
// can give.
//
//   - bad_number: a parameter that is missing where required or not a
//     decimal integer from 0 to 2^63-1.
//   - bad_range: numbers that name no proof of any log (an index not
//     below the size, a consistency proof from a larger tree to a
//     smaller one).
//   - beyond_log: a tree size larger than the log now is. A client that
//     holds a checkpoint of that size was shown a longer log than this
//     one: truncated, or forked.

// treeNumber reads a non-negative integer query parameter; def is taken
// when it is absent (def < 0: it is required).
func treeNumber(r *http.Request, name string, def int64) (int64, *api.Error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		if def < 0 {
			return 0, apiErr(http.StatusBadRequest, "bad_number", "%s is required (a decimal integer ≥ 0)", name)
		}
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, apiErr(http.StatusBadRequest, "bad_number", "%s=%q is not a decimal integer from 0 to %d", name, v, int64(1<<63-1))
	}
	return n, nil
}

// withinLog checks that a tree of size n exists.
func (s *Server) withinLog(name string, n int64) *api.Error {
	if size := s.audit.tree.Size(); n > size {
		return apiErr(http.StatusBadRequest, "beyond_log", "%s=%d: the log has %d entries", name, n, size)
	}
	return nil
}

func (s *Server) handleAuditCheckpoint(w http.ResponseWriter, _ *http.Request) {
	cp := s.audit.latest()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(cp.note)
}

func (s *Server) handleAuditProof(w http.ResponseWriter, r *http.Request) {
	index, e := treeNumber(r, "index", -1)
	if e != nil {
		writeError(w, e)
		return
	}
	size, e := treeNumber(r, "size", -1)
	if e != nil {
		writeError(w, e)
		return
	}
	if index >= size {
		writeError(w, apiErr(http.StatusBadRequest, "bad_range", "index %d is not in a tree of size %d (indexes count from 0)", index, size))
		return
	}
	if e := s.withinLog("size", size); e != nil {
		writeError(w, e)
		return
	}
	proof, err := s.audit.tree.ProveInclusion(index, size)
	if err != nil {
		s.fail(w, "inclusion proof", err)
		return
	}
	writeJSON(w, http.StatusOK, api.InclusionProof{Index: index, Size: size, Proof: nonNil(proof)})
}

func (s *Server) handleAuditConsistency(w http.ResponseWriter, r *http.Request) {
	from, e := treeNumber(r, "from", -1)
	if e != nil {
		writeError(w, e)
		return
	}
	to, e := treeNumber(r, "to", -1)
	if e != nil {
		writeError(w, e)
		return
	}
	if from > to {
		writeError(w, apiErr(http.StatusBadRequest, "bad_range", "from %d is larger than to %d: a log only grows", from, to))
		return
	}
	if e := s.withinLog("to", to); e != nil {
		writeError(w, e)
		return
	}
	var proof tlog.TreeProof
	if from > 0 && from < to { // an empty tree, or the same one, needs no proof
		var err error
		if proof, err = s.audit.tree.ProveConsistency(from, to); err != nil {
			s.fail(w, "consistency proof", err)
			return
		}
	}
	writeJSON(w, http.StatusOK, api.ConsistencyProof{From: from, To: to, Proof: nonNil(proof)})
}

func nonNil(p []tlog.Hash) []tlog.Hash {
	if p == nil {
		return []tlog.Hash{}
	}
	return p
}

func (s *Server) handleAuditEntries(w http.ResponseWriter, r *http.Request) {
	if p, ok := s.auditPage(w, r); ok {
		writeJSON(w, http.StatusOK, api.AuditPage{Entries: p.Entries, More: p.More, Next: p.Next, Size: p.Size})
	}
}

// handleAudit answers GET /api/audit: a page of entries, as
// handleAuditEntries, with the control plane's public key. A page is one
// batched read of at most api.AuditPageMax records, whatever the log's size.
func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	if p, ok := s.auditPage(w, r); ok {
		writeJSON(w, http.StatusOK, api.AuditEntries{PublicKey: s.PublicKey(), Entries: p.Entries, More: p.More, Next: p.Next, Size: p.Size})
	}
}

// auditPage reads the page a request's scope and range name, answering
// the request itself when it cannot.
func (s *Server) auditPage(w http.ResponseWriter, r *http.Request) (page, bool) {
	meeting, all, e := s.auditScope(r)
	if e != nil {
		writeError(w, e)
		return page{}, false
	}
	start, limit, e := auditPageRange(r)
	if e != nil {
		writeError(w, e)
		return page{}, false
	}
	p, err := s.audit.readPage(r.Context(), meeting, all, start, limit)
	if err != nil {
		s.fail(w, "read audit log", err)
		return page{}, false
	}
	return p, true
}

// auditPageRange reads ?start= (default 0) and ?limit= (default and most
// api.AuditPageMax; a larger one is cut to it, 0 is an error).
func auditPageRange(r *http.Request) (start int64, limit int, e *api.Error) {
	if start, e = treeNumber(r, "start", 0); e != nil {
		return 0, 0, e
	}
	n, e := treeNumber(r, "limit", api.AuditPageMax)
	if e != nil {
		return 0, 0, e
	}
	if n == 0 {
		return 0, 0, apiErr(http.StatusBadRequest, "bad_number", "limit must be at least 1 (at most %d)", api.AuditPageMax)
	}
	return start, int(min(n, api.AuditPageMax)), nil
}

// joinAudit is the log's state for a join answer: the newest checkpoint
// (which a later one, consistent with it, will show includes the join's
// entry index) and how often checkpoints come.
func (a *auditor) joinAudit(index int64) api.JoinAudit {
	return api.JoinAudit{Checkpoint: string(a.latest().note), VerifierKey: a.vkey, Index: index, EveryMS: a.every.Milliseconds()}
}
