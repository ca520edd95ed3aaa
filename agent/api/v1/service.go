package agentv1

import "confguest/agent/api/v1/wire"

// ServiceName is the ttrpc service name of the agent API; full method
// names are "/" + ServiceName + "/" + method.
const ServiceName = wire.ServiceName
