# vagrant_stub.rb VAGRANTFILE [AS]: evaluates a Vagrantfile (as if it were
# the file AS, for __dir__ and error messages) against a stand-in for
# Vagrant's configuration API and prints, as JSON, every setting and call it
# made, so that a test can check the machines, networks and provisioners
# without Vagrant. Each recorder is {"attrs": {name: value},
# "calls": [{"name", "args", "kw", "block"}], "children": {name: recorder}}.
require "json"

class Recorder
  def initialize
    @attrs = {}
    @calls = []
    @children = {}
  end

  def method_missing(name, *args, **kw, &blk)
    name = name.to_s
    if name.end_with?("=")
      @attrs[name.chomp("=")] = args[0]
      return args[0]
    end
    if blk.nil? && args.empty? && kw.empty?
      return (@children[name] ||= Recorder.new)
    end
    block = Recorder.new
    blk&.call(block)
    @calls << { "name" => name, "args" => args, "kw" => kw.transform_keys(&:to_s), "block" => block }
    block
  end

  def respond_to_missing?(*)
    true
  end

  def to_json(*a)
    { "attrs" => @attrs, "calls" => @calls, "children" => @children }.to_json(*a)
  end
end

module Vagrant
  def self.configure(version)
    raise "unexpected configuration version #{version}" unless version == "2"
    config = Recorder.new
    yield config
    $configs << config
  end
end

$configs = []
path = File.expand_path(ARGV.fetch(0))
as = File.expand_path(ARGV.fetch(1, path))
eval(File.read(path), TOPLEVEL_BINDING, as)
puts JSON.pretty_generate($configs)
