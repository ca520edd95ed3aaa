// Package wire is the agent's side of version 1 of the confguest agent API: the messages
// of agent/api/v1/agent.proto as plain Go structs that encode themselves (Marshal,
// Unmarshal, byte for byte what the protobuf runtime writes and accepts), the Agent
// service's server interface on confguest/agent/ttrpcserver, and the helpers the agent
// applies to requests (ServiceName, PodNamespaces.Types, Verity.Params,
// BlockRootfs.CheckLayerFormat, the volume bounds).
//
// agent.wire.go is generated from the same agent.proto as the host's package
// (agent/api/v1, protoc-gen-go's types and containerd's ttrpc client) by
// agent/api/protoc-gen-go-wire (agent/api/generate.sh), with protoc-gen-go's Go names,
// so that the agent links no protobuf runtime, reflection or descriptors. The host uses
// agent/api/v1, which re-exports what both sides share from here.
package wire
