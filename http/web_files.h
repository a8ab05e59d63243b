// The web page's files (http/web/), compiled into the server by http/embed_web.cmake.
#ifndef MODELDOCK_HTTP_WEB_FILES_H_
#define MODELDOCK_HTTP_WEB_FILES_H_

#include <cstddef>
#include <vector>

namespace modeldock::http {

struct WebFile {
  const char* path;  // "/", "/static/app.js", ...
  const char* content_type;
  const unsigned char* data;
  size_t size;
};

const std::vector<WebFile>& WebFiles();

}  // namespace modeldock::http

#endif  // MODELDOCK_HTTP_WEB_FILES_H_
