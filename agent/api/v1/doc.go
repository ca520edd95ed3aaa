// Package agentv1 is version 1 of the confguest agent API: the ttrpc service the host
// calls over vsock (agent.proto, generated into agent.pb.go and agent_ttrpc.pb.go), and
// what both sides of it share: ServiceName, CopyOutput (a process's output read with
// credit), and NewVerity and Verity.Params (the verity parameters of a layer on the wire).
// The host side imports only the agent's API packages (agent/api/...).
package agentv1
