package control

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	reg        *prometheus.Registry
	placements *prometheus.CounterVec
	refusals   *prometheus.CounterVec
	migrations *prometheus.CounterVec
	healthy    prometheus.GaugeFunc
}

func newMetrics(healthy func() int) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oakmeet_placements_total",
			Help: "Participants placed, by the country of the chosen node.",
		}, []string{"node_country"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oakmeet_refusals_total",
			Help: "Joins refused, by refusal code.",
		}, []string{"code"}),
		migrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oakmeet_migrations_total",
			Help: "Participants moved off a node, by reason.",
		}, []string{"reason"}),
		healthy: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "oakmeet_healthy_nodes",
			Help: "Media nodes currently sending heartbeats.",
		}, func() float64 { return float64(healthy()) }),
	}
	m.reg.MustRegister(m.placements, m.refusals, m.migrations, m.healthy,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
