defmodule ElixirHello.Server do
  @moduledoc """
  A small HTTP/1.1 responder for blargh: the listening socket is inherited as fd 3
  (LISTEN_FDS/LISTEN_PID, systemd style), READY=1 goes to NOTIFY_SOCKET, and on SIGTERM it
  drains: stops accepting, finishes requests in flight, answers the next request on a
  keep-alive connection with `Connection: close`, closes connections left idle, then the
  VM exits 0.
  """
  use GenServer
  require Logger

  @idle_grace 500

  def start_link, do: GenServer.start_link(__MODULE__, [], name: __MODULE__)

  @impl true
  def init(_) do
    Process.flag(:trap_exit, true)
    listen = inherited_listener!()
    server = self()
    acceptor = spawn_link(fn -> accept_loop(listen, server) end)
    notify_ready()
    {:ok, %{listen: listen, acceptor: acceptor, conns: MapSet.new()}}
  end

  # LISTEN_FDS sockets start at fd 3; they are ours only if LISTEN_PID is this VM.
  defp inherited_listener! do
    pid = System.get_env("LISTEN_PID")
    fds = System.get_env("LISTEN_FDS", "0") |> String.to_integer()

    if pid != List.to_string(:os.getpid()) or fds < 1 do
      raise "no inherited socket: LISTEN_PID=#{inspect(pid)} (we are #{:os.getpid()}), LISTEN_FDS=#{fds}"
    end

    {:ok, listen} =
      :gen_tcp.listen(0, [:binary, {:fd, 3}, active: false, reuseaddr: true, packet: :raw])

    listen
  end

  defp notify_ready do
    case System.get_env("NOTIFY_SOCKET") do
      nil ->
        :ok

      "@" <> abstract ->
        send_notify(<<0>> <> abstract)

      path ->
        send_notify(path)
    end
  end

  defp send_notify(path) do
    {:ok, sock} = :socket.open(:local, :dgram, :default)
    :ok = :socket.sendto(sock, "READY=1", %{family: :local, path: path})
    :socket.close(sock)
  end

  # Accepts with a short timeout so that a :stop between two accepts ends the loop only
  # after the connection in hand has been handed over: none is accepted and then dropped.
  defp accept_loop(listen, server) do
    receive do
      :stop -> exit(:normal)
    after
      0 ->
        case :gen_tcp.accept(listen, 200) do
          {:ok, sock} ->
            pid = spawn(fn -> receive(do: (:go -> serve(sock, "", false))) end)
            :ok = :gen_tcp.controlling_process(sock, pid)
            send(server, {:conn, pid})
            send(pid, :go)
            accept_loop(listen, server)

          {:error, :timeout} ->
            accept_loop(listen, server)

          {:error, reason} ->
            exit({:accept, reason})
        end
    end
  end

  @impl true
  def handle_info({:conn, pid}, state) do
    Process.monitor(pid)
    {:noreply, %{state | conns: MapSet.put(state.conns, pid)}}
  end

  def handle_info({:DOWN, _, :process, pid, _}, state),
    do: {:noreply, %{state | conns: MapSet.delete(state.conns, pid)}}

  def handle_info({:EXIT, _, _}, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    # Stop accepting, but keep the listening socket open: it is shared with the next
    # release, and what waits in its queue is that release's to accept.
    send(state.acceptor, :stop)

    receive do
      {:EXIT, pid, _} when pid == state.acceptor -> :ok
    after
      5_000 -> Process.exit(state.acceptor, :kill)
    end

    conns = late_conns(state.conns)
    Enum.each(conns, &send(&1, :drain))
    wait_for(conns)
    Logger.info("drained, exiting")
  end

  # Connections the acceptor handed over while terminate/2 was already running.
  defp late_conns(conns) do
    receive do
      {:conn, pid} ->
        Process.monitor(pid)
        late_conns(MapSet.put(conns, pid))
    after
      0 -> conns
    end
  end

  defp wait_for(conns) do
    if MapSet.size(conns) > 0 do
      receive do
        {:DOWN, _, :process, pid, _} -> wait_for(MapSet.delete(conns, pid))
      after
        25_000 -> :timeout
      end
    end
  end

  # One connection: read a request (GET, no body), answer, repeat while keep-alive.
  defp serve(sock, buf, draining) do
    case :binary.split(buf, "\r\n\r\n") do
      [head, rest] ->
        {status, body, close?} = respond(head)
        close? = close? or draining or drain_requested?()
        conn = if close?, do: "close", else: "keep-alive"

        reply = [
          "HTTP/1.1 #{status}\r\ncontent-type: text/plain\r\ncontent-length: #{byte_size(body)}\r\n",
          "connection: #{conn}\r\n\r\n",
          body
        ]

        case :gen_tcp.send(sock, reply) do
          :ok when not close? -> serve(sock, rest, false)
          _ -> :gen_tcp.close(sock)
        end

      [_partial] ->
        # Idle (nothing buffered) while draining: wait a moment for a request already on
        # its way, then close.
        timeout = if draining and buf == "", do: @idle_grace, else: 100

        case :gen_tcp.recv(sock, 0, timeout) do
          {:ok, data} ->
            serve(sock, buf <> data, draining)

          {:error, :timeout} ->
            cond do
              draining and buf == "" -> :gen_tcp.close(sock)
              draining -> serve(sock, buf, true)
              true -> serve(sock, buf, drain_requested?())
            end

          {:error, _} ->
            :gen_tcp.close(sock)
        end
    end
  end

  defp drain_requested? do
    receive do
      :drain -> true
    after
      0 -> false
    end
  end

  defp respond(head) do
    [line | headers] = String.split(head, "\r\n")
    close? = Enum.any?(headers, &(String.downcase(&1) == "connection: close"))

    case String.split(line, " ") do
      ["GET", "/", _] ->
        vsn = Application.spec(:elixir_hello, :vsn)
        id = System.get_env("BLARGH_RELEASE_ID", "none")
        {"200 OK", "hello from elixir #{vsn} (release #{id})\n", close?}

      _ ->
        {"404 Not Found", "not found\n", close?}
    end
  end
end
