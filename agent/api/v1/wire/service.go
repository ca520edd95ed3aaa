package wire

// ServiceName is the ttrpc service name of the agent API; full method
// names are "/" + ServiceName + "/" + method.
const ServiceName = "confguest.agent.v1.Agent"
