// The reference server of the benchmark: ZeroC Ice 3.7 (C++11 mapping), one object adapter
// with one servant ("pinger"), on the endpoints given. Ice properties come from the command
// line (--Ice.X=...), so the thread pools and IceSSL are configured by the caller.
#include <Ice/Ice.h>
#include <Ice/RegisterPlugins.h>
#include <Bench.h>
#include <iostream>

namespace
{
class Pinger : public Bench::Pinger
{
public:
    void ping(const Ice::Current&) override {}
};
}

int main(int argc, char* argv[])
{
    // Linked in rather than loaded by name, so the plugin's library name never matters.
    Ice::registerIceSSL(true);
    try
    {
        // Ice parses only its own --Ice.* options; the --Bench.* ones become properties here.
        Ice::InitializationData init;
        init.properties = Ice::createProperties(argc, argv);
        init.properties->parseCommandLineOptions("Bench", Ice::argsToStringSeq(argc, argv));
        Ice::CommunicatorHolder ich(init);
        auto communicator = ich.communicator();
        auto props = communicator->getProperties();
        if (props->getProperty("Bench.Endpoints").empty())
        {
            std::cerr << "pingserver: set --Bench.Endpoints=\"tcp -h 127.0.0.1 -p PORT\"" << std::endl;
            return 2;
        }
        auto adapter = communicator->createObjectAdapter("Bench");
        adapter->add(std::make_shared<Pinger>(), Ice::stringToIdentity("pinger"));
        adapter->activate();
        std::cout << "pingserver: ready" << std::endl;
        communicator->waitForShutdown();
    }
    catch (const std::exception& ex)
    {
        std::cerr << "pingserver: " << ex.what() << std::endl;
        return 1;
    }
    return 0;
}
