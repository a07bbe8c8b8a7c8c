/* An OPC UA server that changes many variables fast, for twin's OPC UA benchmark.
 *
 *   opcua_load_server PORT ITEMS [INTERVAL_MS]
 *
 * Serves opc.tcp://127.0.0.1:PORT/ (SecurityPolicy None, anonymous) with ITEMS Double variables
 * ns=1;s=Item0 … under Objects/Bulk, each given a new value (and source timestamp) every
 * INTERVAL_MS (default 100). Prints "ready PORT" when it serves. Built on open62541 (C): asyncua,
 * the tests' server, is pure Python and changes about 5,000 values a second at most, far from
 * 10,000 items every 100 ms. Compile against open62541's amalgamation (open62541.c/.h, made by
 * its CMake with -DUA_ENABLE_AMALGAMATION=ON); Benchmarks/opcua_bench.py --load-server does. */
#include "open62541.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static UA_Boolean running = true;
static UA_NodeId *ids;
static size_t count;
static UA_UInt64 tick;

static void stop(int sig) { (void)sig; running = false; }

static void change(UA_Server *server, void *data) {
    (void)data;
    tick++;
    UA_DateTime now = UA_DateTime_now();
    for (size_t i = 0; i < count; i++) {
        UA_Double v = (UA_Double)(tick + i);
        UA_DataValue dv;
        UA_DataValue_init(&dv);
        UA_Variant_setScalar(&dv.value, &v, &UA_TYPES[UA_TYPES_DOUBLE]);
        dv.hasValue = true;
        dv.sourceTimestamp = now;
        dv.hasSourceTimestamp = true;
        UA_Server_writeDataValue(server, ids[i], dv);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s PORT ITEMS [INTERVAL_MS]\n", argv[0]); return 64; }
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    UA_UInt16 port = (UA_UInt16)atoi(argv[1]);
    count = (size_t)atol(argv[2]);
    double interval = argc > 3 ? atof(argv[3]) : 100.0;
    UA_Server *server = UA_Server_new();
    UA_ServerConfig *config = UA_Server_getConfig(server);
    UA_ServerConfig_setMinimal(config, port, NULL);
    config->maxMonitoredItems = 1000000;
    config->maxMonitoredItemsPerCall = 100000;
    config->samplingIntervalLimits.min = 10.0;
    config->publishingIntervalLimits.min = 10.0;
    config->logging->log = NULL;  /* quiet */

    UA_ObjectAttributes folder = UA_ObjectAttributes_default;
    folder.displayName = UA_LOCALIZEDTEXT("en", "Bulk");
    UA_NodeId bulk;
    UA_Server_addObjectNode(server, UA_NODEID_STRING(1, "Bulk"), UA_NODEID_NUMERIC(0, UA_NS0ID_OBJECTSFOLDER),
                            UA_NODEID_NUMERIC(0, UA_NS0ID_ORGANIZES), UA_QUALIFIEDNAME(1, "Bulk"),
                            UA_NODEID_NUMERIC(0, UA_NS0ID_BASEOBJECTTYPE), folder, NULL, &bulk);
    ids = calloc(count, sizeof(UA_NodeId));
    for (size_t i = 0; i < count; i++) {
        char name[32];
        snprintf(name, sizeof name, "Item%zu", i);
        UA_VariableAttributes a = UA_VariableAttributes_default;
        UA_Double zero = 0;
        UA_Variant_setScalar(&a.value, &zero, &UA_TYPES[UA_TYPES_DOUBLE]);
        a.displayName = UA_LOCALIZEDTEXT("en", name);
        a.accessLevel = UA_ACCESSLEVELMASK_READ;
        UA_Server_addVariableNode(server, UA_NODEID_STRING_ALLOC(1, name), bulk, UA_NODEID_NUMERIC(0, UA_NS0ID_HASCOMPONENT),
                                  UA_QUALIFIEDNAME_ALLOC(1, name), UA_NODEID_NUMERIC(0, UA_NS0ID_BASEDATAVARIABLETYPE), a, NULL, &ids[i]);
    }
    UA_Server_addRepeatedCallback(server, change, NULL, interval, NULL);
    printf("ready %u\n", port);
    fflush(stdout);
    UA_StatusCode rc = UA_Server_runUntilInterrupt(server);
    (void)running;
    UA_Server_delete(server);
    return rc == UA_STATUSCODE_GOOD ? 0 : 1;
}
