package bench

import (
	"context"
	"fmt"
)

// DefaultMinDelivery is the delivery a ramp's step must reach to count.
const DefaultMinDelivery = 0.999

// RampStep is one step of a capacity ramp: a run of its own.
type RampStep struct {
	Subscribers int `json:"subscribers"`
	// StreamsOut is how many tracks the node forwarded to receivers:
	// every publisher's to every subscriber and to every other publisher.
	StreamsOut int `json:"streams_out"`
	// StreamsPerCore and EgressMbpsPerCore are StreamsOut and the egress
	// over the node's CPU in cores: what one core carries at this load.
	StreamsPerCore    float64 `json:"streams_per_core,omitempty"`
	EgressMbpsPerCore float64 `json:"egress_mbps_per_core,omitempty"`
	// Delivered is whether both frame and packet delivery reached the
	// ramp's minimum.
	Delivered bool    `json:"delivered"`
	Result    *Result `json:"result"`
}

// RampResult is a whole ramp. Capacity is read off the most loaded step
// that delivered, where the node's fixed costs weigh least.
type RampResult struct {
	MinDelivery       float64    `json:"min_delivery"`
	Steps             []RampStep `json:"steps"`
	StreamsPerCore    float64    `json:"streams_per_core"`
	EgressMbpsPerCore float64    `json:"egress_mbps_per_core"`
	// AtSubscribers is the step Capacity was read off, 0 if none
	// delivered; Stopped says why the ramp ended.
	AtSubscribers int    `json:"at_subscribers"`
	Stopped       string `json:"stopped"`
}

// Ramp runs cfg once per subscriber count, in order, each in a meeting of
// its own, until a step delivers less than minDelivery (zero means
// DefaultMinDelivery) or the list ends. The node's CPU must be measurable
// (cfg.NodePID, or a node on this machine): capacity is per node core.
func Ramp(ctx context.Context, cfg Config, subscribers []int, minDelivery float64) (*RampResult, error) {
	if len(subscribers) == 0 {
		return nil, fmt.Errorf("a ramp needs at least one subscriber count")
	}
	for i, s := range subscribers {
		if s < 0 || i > 0 && s <= subscribers[i-1] {
			return nil, fmt.Errorf("ramp %v: subscriber counts must rise", subscribers)
		}
	}
	if minDelivery <= 0 {
		minDelivery = DefaultMinDelivery
	}
	if cfg.Meeting != "" {
		return nil, fmt.Errorf("a ramp makes a meeting per step: not with a given meeting")
	}
	progress := cfg.Progress
	if progress == nil {
		progress = func(string) {}
	}
	rr := &RampResult{MinDelivery: minDelivery, Stopped: "the last step delivered"}
	for _, s := range subscribers {
		step := cfg
		step.Subscribers = s
		progress(fmt.Sprintf("ramp: %d publishers, %d subscribers", cfg.Publishers, s))
		res, err := Run(ctx, step)
		if err != nil {
			return rr, fmt.Errorf("ramp step of %d subscribers: %w", s, err)
		}
		perKind := 1
		if !cfg.NoAudio && !cfg.NoVideo {
			perKind = 2
		}
		st := RampStep{Subscribers: s, StreamsOut: perKind * cfg.Publishers * (s + cfg.Publishers - 1), Result: res,
			Delivered: res.DeliveryRatio >= minDelivery && res.PacketDeliveryRatio >= minDelivery && len(res.Errors) == 0}
		if res.NodeCPUCores == nil {
			return rr, fmt.Errorf("ramp step of %d subscribers: the node's CPU could not be measured (--node-pid names its process)", s)
		}
		if c := *res.NodeCPUCores; c > 0 {
			st.StreamsPerCore = float64(st.StreamsOut) / c
			st.EgressMbpsPerCore = res.EgressMbps / c
		}
		rr.Steps = append(rr.Steps, st)
		progress(fmt.Sprintf("ramp: %d subscribers: delivery %.4f frames, %.4f packets; node %.3f cores, %.0f streams per core",
			s, res.DeliveryRatio, res.PacketDeliveryRatio, *res.NodeCPUCores, st.StreamsPerCore))
		if !st.Delivered {
			rr.Stopped = fmt.Sprintf("%d subscribers delivered less than %.1f%%", s, 100*minDelivery)
			break
		}
		rr.StreamsPerCore, rr.EgressMbpsPerCore, rr.AtSubscribers = st.StreamsPerCore, st.EgressMbpsPerCore, s
	}
	return rr, nil
}
