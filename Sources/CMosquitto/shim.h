// libmosquitto from Debian (libmosquitto-dev; scripts/bootstrap installs it).
#include <mosquitto.h>
#include <mqtt_protocol.h>
