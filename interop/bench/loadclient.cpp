// The benchmark's judge: a ZeroC Ice 3.7 (C++11 mapping) client.
//
//   loadclient ping --Bench.Proxy=P --Bench.InFlight=N --Bench.Seconds=D
//              [--Bench.Router=R --Bench.User=U --Bench.Password=W] [--Ice.X=...]
//     keeps N twoway ice_ping calls in flight for D seconds (after a short warm-up) and prints
//     "calls_per_s <rate>". With a router it first logs in (Glacier2 createSession) and pings
//     through it: the session proxy createSession returns when there is one (our server's
//     ServiceFactory), otherwise P (glacier2router with no session manager). With
//     --Bench.CpuPids=pid,pid it also prints the CPU time those processes used per call in the
//     measured window ("server_cpu_us_per_call"), a figure other load on the machine moves less.
//
//   loadclient accept --Bench.Host=H --Bench.Port=P --Bench.Seconds=D --Bench.Threads=T
//     opens plain TCP connections as fast as T threads can, reads each one's Ice
//     ValidateConnection message, closes it, and prints "accepts_per_s <rate>". Raw sockets, so
//     the figure is the server's accept-and-validate rate rather than the Ice client's.
#include <Glacier2/Glacier2.h>
#include <Ice/Ice.h>
#include <Ice/RegisterPlugins.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <mutex>
#include <thread>
#include <vector>

namespace
{
using Clock = std::chrono::steady_clock;

// Keeps `inFlight` pings outstanding; each completion starts the next one until stopped.
class Pinger : public std::enable_shared_from_this<Pinger>
{
public:
    explicit Pinger(std::shared_ptr<Ice::ObjectPrx> target) : _target(std::move(target)) {}

    void start(int inFlight)
    {
        for (int i = 0; i < inFlight; ++i)
        {
            launch();
        }
    }

    void stop() { _stopping = true; }

    long long completed() const { return _completed.load(); }

    std::string error()
    {
        std::lock_guard<std::mutex> lock(_mutex);
        return _error;
    }

    // Waits until every outstanding call has finished.
    void drain()
    {
        std::unique_lock<std::mutex> lock(_mutex);
        _idle.wait(lock, [this] { return _outstanding == 0; });
    }

private:
    void launch()
    {
        {
            std::lock_guard<std::mutex> lock(_mutex);
            ++_outstanding;
        }
        auto self = shared_from_this();
        _target->ice_pingAsync(
            [self] {
                self->_completed.fetch_add(1, std::memory_order_relaxed);
                self->finished();
            },
            [self](std::exception_ptr ex) {
                try
                {
                    std::rethrow_exception(ex);
                }
                catch (const std::exception& e)
                {
                    std::lock_guard<std::mutex> lock(self->_mutex);
                    if (self->_error.empty())
                    {
                        self->_error = e.what();
                    }
                }
                self->_stopping = true;
                self->finished();
            });
    }

    void finished()
    {
        if (!_stopping)
        {
            launch();
        }
        std::lock_guard<std::mutex> lock(_mutex);
        if (--_outstanding == 0)
        {
            _idle.notify_all();
        }
    }

    std::shared_ptr<Ice::ObjectPrx> _target;
    std::atomic<bool> _stopping{false};
    std::atomic<long long> _completed{0};
    std::mutex _mutex;
    std::condition_variable _idle;
    int _outstanding = 0;
    std::string _error;
};

// CPU time (user + system, all threads) process `pid` has used so far, in microseconds; -1 when
// it cannot be read.
long long cpuMicros(int pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    auto close = text.rfind(')');
    if (close == std::string::npos)
    {
        return -1;
    }
    std::istringstream fields(text.substr(close + 2));
    std::string field;
    long long utime = -1;
    long long stime = -1;
    // utime and stime are fields 14 and 15 of the line, the 12th and 13th after the name.
    for (int i = 3; i <= 15 && fields >> field; ++i)
    {
        if (i == 14)
        {
            utime = std::atoll(field.c_str());
        }
        else if (i == 15)
        {
            stime = std::atoll(field.c_str());
        }
    }
    if (utime < 0 || stime < 0)
    {
        return -1;
    }
    return (utime + stime) * 1000000LL / ::sysconf(_SC_CLK_TCK);
}

// The summed CPU time of the processes named by --Bench.CpuPids (the servers of the path).
long long serverCpuMicros(const Ice::StringSeq& pids)
{
    long long total = 0;
    for (const auto& pid : pids)
    {
        auto us = cpuMicros(std::atoi(pid.c_str()));
        if (us < 0)
        {
            return -1;
        }
        total += us;
    }
    return total;
}

int ping(const std::shared_ptr<Ice::Communicator>& communicator)
{
    auto props = communicator->getProperties();
    auto inFlight = props->getPropertyAsIntWithDefault("Bench.InFlight", 1);
    auto seconds = props->getPropertyAsIntWithDefault("Bench.Seconds", 3);
    auto warmupMs = props->getPropertyAsIntWithDefault("Bench.WarmupMs", 500);
    auto target = communicator->stringToProxy(props->getProperty("Bench.Proxy"));

    auto routerText = props->getProperty("Bench.Router");
    std::shared_ptr<Glacier2::RouterPrx> router;
    if (!routerText.empty())
    {
        router = Ice::uncheckedCast<Glacier2::RouterPrx>(communicator->stringToProxy(routerText));
        // OMERO's routers refuse a login without the client's uuid; Glacier2's ignores it.
        Ice::Context ctx{{"omero.client.uuid", Ice::generateUUID()}};
        auto session = router->createSession(props->getProperty("Bench.User"), props->getProperty("Bench.Password"), ctx);
        if (session)
        {
            target = session;
        }
        if (!target)
        {
            std::cerr << "loadclient: no session proxy and no --Bench.Proxy" << std::endl;
            return 2;
        }
        target = target->ice_router(router);
    }
    if (!target)
    {
        std::cerr << "loadclient: set --Bench.Proxy" << std::endl;
        return 2;
    }
    target->ice_ping();

    auto pinger = std::make_shared<Pinger>(target);
    pinger->start(inFlight);
    auto cpuPids = props->getPropertyAsList("Bench.CpuPids");
    std::this_thread::sleep_for(std::chrono::milliseconds(warmupMs));
    auto before = pinger->completed();
    auto cpuBefore = serverCpuMicros(cpuPids);
    auto t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    auto after = pinger->completed();
    auto cpuAfter = serverCpuMicros(cpuPids);
    auto elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    pinger->stop();
    pinger->drain();

    auto error = pinger->error();
    if (!error.empty())
    {
        std::cerr << "loadclient: ping failed: " << error << std::endl;
        return 1;
    }
    // The total, warm-up included, lets a profiler divide its counters by the calls made.
    double cpuPerCall = -1;
    if (cpuBefore >= 0 && cpuAfter >= 0 && after > before)
    {
        cpuPerCall = static_cast<double>(cpuAfter - cpuBefore) / static_cast<double>(after - before);
    }
    std::cout << "calls_per_s " << static_cast<long long>((after - before) / elapsed) << " total "
              << pinger->completed() << " server_cpu_us_per_call " << cpuPerCall << std::endl;
    if (router)
    {
        try
        {
            router->destroySession();
        }
        catch (const Ice::Exception&)
        {
            // The figure is printed already; a session that ends badly changes nothing.
        }
    }
    return 0;
}

// One connect + read of the 14-byte ValidateConnection message; false on any failure.
bool acceptOnce(const sockaddr_in& addr)
{
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
    {
        return false;
    }
    bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0;
    unsigned char header[14];
    size_t got = 0;
    while (ok && got < sizeof(header))
    {
        auto n = ::read(fd, header + got, sizeof(header) - got);
        if (n <= 0)
        {
            ok = false;
        }
        else
        {
            got += static_cast<size_t>(n);
        }
    }
    // 'IceP' magic and message type 3 (validate connection).
    ok = ok && std::memcmp(header, "IceP", 4) == 0 && header[8] == 3;
    ::close(fd);
    return ok;
}

int accept(const std::shared_ptr<Ice::Communicator>& communicator)
{
    auto props = communicator->getProperties();
    auto host = props->getPropertyWithDefault("Bench.Host", "127.0.0.1");
    auto port = props->getPropertyAsInt("Bench.Port");
    auto seconds = props->getPropertyAsIntWithDefault("Bench.Seconds", 3);
    auto threads = props->getPropertyAsIntWithDefault("Bench.Threads", 4);

    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    {
        std::cerr << "loadclient: bad --Bench.Host " << host << std::endl;
        return 2;
    }
    if (!acceptOnce(addr))
    {
        std::cerr << "loadclient: no ValidateConnection from " << host << ":" << port << std::endl;
        return 1;
    }

    std::atomic<bool> stop{false};
    std::atomic<long long> done{0};
    std::atomic<long long> failed{0};
    std::vector<std::thread> workers;
    auto t0 = Clock::now();
    for (int i = 0; i < threads; ++i)
    {
        workers.emplace_back([&] {
            while (!stop)
            {
                if (acceptOnce(addr))
                {
                    ++done;
                }
                else
                {
                    ++failed;
                }
            }
        });
    }
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    stop = true;
    for (auto& w : workers)
    {
        w.join();
    }
    auto elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    std::cout << "accepts_per_s " << static_cast<long long>(done / elapsed) << " failed " << failed << std::endl;
    return 0;
}
}

int main(int argc, char* argv[])
{
    Ice::registerIceSSL(true);
    if (argc < 2)
    {
        std::cerr << "usage: loadclient ping|accept --Bench.X=... [--Ice.X=...]" << std::endl;
        return 2;
    }
    std::string mode = argv[1];
    try
    {
        // Ice parses only its own --Ice.* options; the --Bench.* ones become properties here.
        Ice::InitializationData init;
        init.properties = Ice::createProperties(argc, argv);
        init.properties->parseCommandLineOptions("Bench", Ice::argsToStringSeq(argc, argv));
        Ice::CommunicatorHolder ich(init);
        if (mode == "ping")
        {
            return ping(ich.communicator());
        }
        if (mode == "accept")
        {
            return accept(ich.communicator());
        }
        std::cerr << "loadclient: unknown mode " << mode << std::endl;
        return 2;
    }
    catch (const Glacier2::CannotCreateSessionException& ex)
    {
        std::cerr << "loadclient: cannot create session: " << ex.reason << std::endl;
        return 1;
    }
    catch (const Glacier2::PermissionDeniedException& ex)
    {
        std::cerr << "loadclient: permission denied: " << ex.reason << std::endl;
        return 1;
    }
    catch (const std::exception& ex)
    {
        std::cerr << "loadclient: " << ex.what() << std::endl;
        return 1;
    }
}
