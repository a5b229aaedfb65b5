defmodule ElixirHello.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    # SIGTERM stays OTP's default: init:stop/0, which stops this application, which
    # terminates ElixirHello.Server, whose terminate/2 drains.
    children = [
      %{id: ElixirHello.Server, start: {ElixirHello.Server, :start_link, []}, shutdown: 30_000}
    ]

    Supervisor.start_link(children, strategy: :one_for_one, name: ElixirHello.Supervisor)
  end
end
