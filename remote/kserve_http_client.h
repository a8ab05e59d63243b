// Internal to remote/: the KServe v2 client over HTTP/REST (the Open Inference Protocol's JSON
// binding), for remote models behind an inference server that speaks only HTTP (KServe's
// InferenceService URL, MLServer or Triton on their HTTP ports, another dock's --http-listen).
// KServeClient::Connect picks it for an endpoint written as a URL, "http://HOST:PORT" or
// "https://HOST:PORT" (an optional path prefix is kept: a gateway's route to the server).
#ifndef MODELDOCK_REMOTE_KSERVE_HTTP_CLIENT_H_
#define MODELDOCK_REMOTE_KSERVE_HTTP_CLIENT_H_

#include <memory>
#include <string>

#include "remote/kserve_client.h"

namespace modeldock::remote {

std::unique_ptr<KServeClient> ConnectHttp(const std::string& url, const ChannelSecurity& security);

}  // namespace modeldock::remote

#endif  // MODELDOCK_REMOTE_KSERVE_HTTP_CLIENT_H_
