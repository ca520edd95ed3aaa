// Package agentv1 is version 1 of the confguest agent API as the host uses it: the ttrpc
// service the host calls over vsock (agent.proto, generated into agent.pb.go and
// agent_ttrpc.pb.go), and what the host builds requests with: CopyOutput (a process's
// output read with credit), NewVerity, NewPodNamespaces. The agent's side of the same
// agent.proto is the package wire (agent/api/v1/wire), generated without the protobuf
// runtime; what both sides share (ServiceName, the volume bounds, the verity defaults and
// layer format, the pod namespaces) is defined there and re-exported here.
// The host side imports only the agent's API packages (agent/api/...).
package agentv1
