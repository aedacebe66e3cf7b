module github.com/meshring/meshring/go/wgbind

go 1.25.0

require (
	github.com/meshring/meshring/go v0.0.0
	github.com/tailscale/wireguard-go v0.0.0-20260715223240-2e01ba5b00f0
)

require (
	golang.org/x/net v0.53.0 // indirect
	golang.org/x/sys v0.43.0 // indirect
)

replace github.com/meshring/meshring/go => ../
