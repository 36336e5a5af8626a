package replica

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the replica's own: its role and the requests it forwarded
// or served for others. The leader's /metrics adds them to its control
// plane's.
type metrics struct {
	reg       *prometheus.Registry
	handler   http.Handler
	leader    prometheus.Gauge
	term      prometheus.Gauge
	forwarded prometheus.Counter
	served    prometheus.Counter
	failed    *prometheus.CounterVec
	refused   *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "oakmeet_replica_leader", Help: "1 while this replica leads the control plane."}),
		term: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "oakmeet_replica_term", Help: "The lease term this replica last saw."}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oakmeet_replica_forwarded_total", Help: "Requests this replica forwarded to the leader and had answered."}),
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oakmeet_replica_served_forwarded_total", Help: "Forwarded requests this replica served as the leader."}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oakmeet_replica_forward_failures_total", Help: "Forwarded requests not answered by a leader, by reason."}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oakmeet_replica_forward_refused_total", Help: "Sealed forwarded requests this replica, leading, did not serve, by reason (malformed, signature, term, stale, replay, open)."}, []string{"reason"}),
	}
	m.reg.MustRegister(m.leader, m.term, m.forwarded, m.served, m.failed, m.refused)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

func (m *metrics) setRole(st Status) {
	if st.IsLeader {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
	m.term.Set(float64(st.Term))
}
