// The transports that ship for tests and demos: capture, null, file and the
// fault injector.
#pragma once

#include <mailers/transports/capture_transport.hpp>
#include <mailers/transports/composite_transport.hpp>
#include <mailers/transports/fault_injector.hpp>
#include <mailers/transports/file_transport.hpp>
#include <mailers/transports/http_transports.hpp>
#include <mailers/transports/null_transport.hpp>
#include <mailers/transports/smtp_transport.hpp>
