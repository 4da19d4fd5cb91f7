"""`python -m bench` (what `make bench` runs): every benchmark in turn."""

from bench import api, bus, emulator, panels, poller, predictor, recommender, recorder

if __name__ == "__main__":
    bus.main()
    emulator.main()
    recorder.main()
    poller.main()
    api.main()
    predictor.main()
    recommender.main()
    panels.main()
