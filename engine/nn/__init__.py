"""Networks: backbones, feature taps, device choice."""
